//! The TCP state machine, after Linux's `nf_conntrack_proto_tcp` without sequence tracking.
//!
//! Events are what a segment's flags say (RST, else SYN or SYN-ACK, else FIN, else ACK), in
//! either direction. Linux's LAST_ACK and SYN_SENT2 are folded in: the second FIN goes
//! straight to TIME_WAIT, and a SYN answered by a SYN (simultaneous open) to SYN_RECV.

use super::key::Direction;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// State of a tracked TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The originator sent a SYN; nothing came back yet.
    SynSent,
    /// The responder answered with a SYN-ACK; the handshake's last ACK is awaited.
    SynRecv,
    /// Handshake complete, or a connection picked up mid-stream.
    Established,
    /// One side sent a FIN.
    FinWait,
    /// The other side acknowledged that FIN; it may still send.
    CloseWait,
    /// Both sides sent a FIN.
    TimeWait,
    /// Reset. The entry lingers for the close timeout so that late segments still pass.
    Close,
}

/// What a segment's flags say to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

/// The event of a segment, or `None` for a flag combination no TCP stack sends (Linux's
/// `tcp_valid_flags`; PSH, ECE and CWR do not matter). FIN without ACK is among them.
pub fn event(flags: u8) -> Option<TcpEvent> {
    const SYN_URG: u8 = SYN | URG;
    const SYN_ACK: u8 = SYN | ACK;
    const RST_ACK: u8 = RST | ACK;
    const FIN_ACK: u8 = FIN | ACK;
    const FIN_ACK_URG: u8 = FIN | ACK | URG;
    const ACK_URG: u8 = ACK | URG;
    match flags & !(PSH | ECE | CWR) {
        SYN | SYN_URG => Some(TcpEvent::Syn),
        SYN_ACK => Some(TcpEvent::SynAck),
        RST | RST_ACK => Some(TcpEvent::Rst),
        FIN_ACK | FIN_ACK_URG => Some(TcpEvent::Fin),
        ACK | ACK_URG => Some(TcpEvent::Ack),
        _ => None,
    }
}

/// The part of a connection's state the machine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProgress {
    pub state: TcpState,
    /// Who closed first: a FIN or ACK from the other side moves the close on.
    pub first_fin: Option<Direction>,
}

impl TcpProgress {
    pub fn new(state: TcpState) -> Self {
        TcpProgress {
            state,
            first_fin: None,
        }
    }
}

/// What a segment did to a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A valid segment: the state may have moved, the idle timer restarts.
    Accepted,
    /// Plausible but outside the machine (a retransmitted SYN after the handshake): passed,
    /// state and timer unchanged.
    Ignored,
    /// Impossible in this state: dropped, nothing changes.
    Invalid,
    /// A SYN on a connection that has finished: the old entry goes and the segment opens a
    /// new connection, judged by policy again.
    Reopen,
}

/// Advances `conn` by one segment travelling in `direction`.
pub fn advance(conn: &mut TcpProgress, event: TcpEvent, direction: Direction) -> Step {
    use Direction::{Original, Reply};
    use TcpState::*;
    let closer = conn.first_fin;
    let (next, step) = match (event, conn.state, direction) {
        (TcpEvent::Rst, _, _) => (Close, Step::Accepted),

        (TcpEvent::Syn, TimeWait | Close, _) => (conn.state, Step::Reopen),
        (TcpEvent::Syn, SynSent, Original) => (SynSent, Step::Accepted),
        (TcpEvent::Syn, SynSent, Reply) => (SynRecv, Step::Accepted),
        (TcpEvent::Syn, _, Original) => (conn.state, Step::Ignored),
        (TcpEvent::Syn, _, Reply) => (conn.state, Step::Invalid),

        (TcpEvent::SynAck, SynSent, Reply) => (SynRecv, Step::Accepted),
        (TcpEvent::SynAck, SynSent, Original) => (SynSent, Step::Invalid),
        (TcpEvent::SynAck, SynRecv, _) => (SynRecv, Step::Accepted),
        (TcpEvent::SynAck, _, Reply) => (conn.state, Step::Ignored),
        (TcpEvent::SynAck, _, Original) => (conn.state, Step::Invalid),

        (TcpEvent::Fin, SynSent, _) => (SynSent, Step::Invalid),
        (TcpEvent::Fin, SynRecv | Established, _) => {
            conn.first_fin = Some(direction);
            (FinWait, Step::Accepted)
        }
        (TcpEvent::Fin, FinWait | CloseWait, _) if closer == Some(direction) => {
            (conn.state, Step::Accepted)
        }
        (TcpEvent::Fin, FinWait | CloseWait | TimeWait, _) => (TimeWait, Step::Accepted),
        (TcpEvent::Fin, Close, _) => (Close, Step::Accepted),

        (TcpEvent::Ack, SynSent, Original) => (SynSent, Step::Invalid),
        (TcpEvent::Ack, SynSent, Reply) => (SynSent, Step::Ignored),
        (TcpEvent::Ack, SynRecv, Original) => (Established, Step::Accepted),
        (TcpEvent::Ack, SynRecv, Reply) => (SynRecv, Step::Accepted),
        (TcpEvent::Ack, FinWait, _) if closer != Some(direction) => (CloseWait, Step::Accepted),
        (TcpEvent::Ack, state, _) => (state, Step::Accepted),
    };
    conn.state = next;
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};
    use TcpEvent::*;
    use TcpState::*;

    #[test]
    fn flag_combinations() {
        let cases = [
            (SYN, Some(Syn)),
            (SYN | URG, Some(Syn)),
            (SYN | ECE | CWR, Some(Syn)),
            (SYN | ACK, Some(SynAck)),
            (SYN | ACK | ECE, Some(SynAck)),
            (RST, Some(Rst)),
            (RST | ACK, Some(Rst)),
            (RST | ACK | PSH, Some(Rst)),
            (RST | ACK | URG, None),
            (SYN | ACK | URG, None),
            (FIN | ACK, Some(Fin)),
            (FIN | ACK | URG | PSH, Some(Fin)),
            (ACK, Some(Ack)),
            (ACK | PSH, Some(Ack)),
            (ACK | URG, Some(Ack)),
            (0, None),
            (FIN, None),
            (FIN | URG | PSH, None),
            (SYN | FIN, None),
            (SYN | RST, None),
            (SYN | FIN | ACK, None),
            (RST | FIN, None),
            (RST | URG, None),
            (URG, None),
            (PSH, None),
            (0xFF, None),
        ];
        for (flags, expected) in cases {
            assert_eq!(event(flags), expected, "flags {flags:#04x}");
        }
    }

    /// Runs segments from a fresh connection in `start` and returns the state and steps.
    fn run(start: TcpState, segments: &[(TcpEvent, Direction)]) -> (TcpState, Vec<Step>) {
        let mut conn = TcpProgress::new(start);
        let steps = segments
            .iter()
            .map(|&(event, dir)| advance(&mut conn, event, dir))
            .collect();
        (conn.state, steps)
    }

    /// Start, segments, final state, and what each segment did.
    type Case = (
        TcpState,
        &'static [(TcpEvent, Direction)],
        TcpState,
        &'static [Step],
    );

    #[test]
    fn transitions() {
        use Step::{Accepted as A, Ignored as I, Invalid as X, Reopen as N};
        let cases: &[Case] = &[
            // Handshake and its retransmissions.
            (SynSent, &[(SynAck, R), (Ack, O)], Established, &[A, A]),
            (SynSent, &[(Syn, O)], SynSent, &[A]),
            (SynSent, &[(SynAck, R), (SynAck, R)], SynRecv, &[A, A]),
            (SynSent, &[(Syn, R)], SynRecv, &[A]),
            (SynSent, &[(SynAck, O)], SynSent, &[X]),
            (SynSent, &[(Ack, O)], SynSent, &[X]),
            (SynSent, &[(Ack, R)], SynSent, &[I]),
            (SynSent, &[(Fin, O)], SynSent, &[X]),
            (SynRecv, &[(Ack, R)], SynRecv, &[A]),
            (Established, &[(Syn, O)], Established, &[I]),
            (Established, &[(Syn, R)], Established, &[X]),
            (Established, &[(SynAck, R)], Established, &[I]),
            (Established, &[(SynAck, O)], Established, &[X]),
            (Established, &[(Ack, O), (Ack, R)], Established, &[A, A]),
            // Closing: originator first, responder first, both at once.
            (Established, &[(Fin, O), (Ack, R)], CloseWait, &[A, A]),
            (Established, &[(Fin, O), (Ack, O)], FinWait, &[A, A]),
            (Established, &[(Fin, O), (Fin, O)], FinWait, &[A, A]),
            (Established, &[(Fin, O), (Fin, R)], TimeWait, &[A, A]),
            (Established, &[(Fin, R), (Fin, O)], TimeWait, &[A, A]),
            (
                Established,
                &[(Fin, O), (Ack, R), (Fin, R), (Ack, O)],
                TimeWait,
                &[A; 4],
            ),
            (
                Established,
                &[(Fin, O), (Ack, R), (Fin, O)],
                CloseWait,
                &[A, A, A],
            ),
            (
                Established,
                &[(Fin, R), (Ack, O), (Ack, R)],
                CloseWait,
                &[A, A, A],
            ),
            (SynRecv, &[(Fin, O)], FinWait, &[A]),
            (TimeWait, &[(Fin, O), (Ack, R)], TimeWait, &[A, A]),
            // Reset from anywhere, and new connections over finished ones.
            (SynSent, &[(Rst, R)], Close, &[A]),
            (Established, &[(Rst, O)], Close, &[A]),
            (FinWait, &[(Rst, R)], Close, &[A]),
            (Close, &[(Ack, R), (Fin, O)], Close, &[A, A]),
            (TimeWait, &[(Syn, O)], TimeWait, &[N]),
            (Close, &[(Syn, R)], Close, &[N]),
            (TimeWait, &[(SynAck, R)], TimeWait, &[I]),
        ];
        for (start, segments, end, steps) in cases {
            assert_eq!(
                run(*start, segments),
                (*end, steps.to_vec()),
                "{start:?} + {segments:?}"
            );
        }
    }
}
