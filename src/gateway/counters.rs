//! The gateway's counters summed over workers, and the report printed when it stops.

use std::fmt::Write;

use super::worker::BackendCounters;
use crate::conntrack::ConntrackStats;
use crate::dataplane::{KernelDrops, PortSide};
use crate::packet::DropReason;
use crate::pipeline::{DROPPED, FORWARDED, WorkerCounters};

/// Every counter of the gateway, summed over its workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets and bytes by port of arrival, forwarded then dropped.
    pub packets: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    /// Dropped frames by [`DropReason::index`].
    pub drops: Vec<u64>,
    /// By port of arrival: forwarded by the path but refused by the other port.
    pub tx_failed: [u64; 2],
    /// By port of arrival: too long for the backend's buffers, never judged.
    pub truncated: [u64; 2],
    /// By port of arrival: what the kernel dropped on the sockets, by the reasons the
    /// backend counts; `None` when it counts none.
    pub kernel_drops: Option<[KernelDrops; 2]>,
    pub conntrack: ConntrackStats,
}

impl Totals {
    pub fn sum<'a>(
        workers: impl IntoIterator<Item = (&'a WorkerCounters, &'a BackendCounters)>,
        conntrack: ConntrackStats,
    ) -> Totals {
        let mut totals = Totals {
            drops: vec![0; DropReason::COUNT],
            conntrack,
            ..Totals::default()
        };
        for (path, backend) in workers {
            for side in 0..2 {
                for verdict in [FORWARDED, DROPPED] {
                    totals.packets[side][verdict] += path.packets[side][verdict].get();
                    totals.bytes[side][verdict] += path.bytes[side][verdict].get();
                }
                totals.tx_failed[side] += backend.tx_failed[side].get();
                totals.truncated[side] += backend.truncated[side].get();
            }
            for (total, counter) in totals.drops.iter_mut().zip(&path.drops) {
                *total += counter.get();
            }
            if let Some(kernel) = backend.kernel.read() {
                let sum = totals.kernel_drops.get_or_insert_default();
                for (total, worker) in sum.iter_mut().zip(&kernel) {
                    total.add(worker);
                }
            }
        }
        totals
    }

    /// The report printed at exit: one line per port, then drops by reason (only those that
    /// happened), the backend's own losses and the kernel's (when any), and the connection
    /// table.
    pub fn report(&self) -> String {
        let mut out = String::from("final counters:\n");
        for side in PortSide::BOTH {
            let i = side.index();
            let _ = writeln!(
                out,
                "  {:<8} forwarded {} packets ({} bytes), dropped {} packets ({} bytes)",
                side.name(),
                self.packets[i][FORWARDED],
                self.bytes[i][FORWARDED],
                self.packets[i][DROPPED],
                self.bytes[i][DROPPED],
            );
        }
        let drops: Vec<String> = self
            .drops
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .filter_map(|(index, count)| {
                DropReason::from_index(index).map(|reason| format!("{} {count}", reason.name()))
            })
            .collect();
        let drops = if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        };
        let _ = writeln!(out, "  drops    {drops}");
        let losses: u64 = self.tx_failed.iter().chain(&self.truncated).sum();
        if losses > 0 {
            let _ = writeln!(
                out,
                "  backend  send failed {} (outside→inside) {} (inside→outside), truncated {} \
                 (outside) {} (inside)",
                self.tx_failed[0], self.tx_failed[1], self.truncated[0], self.truncated[1]
            );
        }
        if let Some([outside, inside]) = &self.kernel_drops
            && outside.total() + inside.total() > 0
        {
            let reasons: Vec<String> = outside
                .counted()
                .map(|(reason, count)| {
                    let inside = inside.get(reason).unwrap_or(0);
                    format!(
                        "{} {count} (outside) {inside} (inside)",
                        reason.description()
                    )
                })
                .collect();
            let _ = writeln!(out, "  kernel   {}", reasons.join(", "));
        }
        let c = &self.conntrack;
        let _ = writeln!(
            out,
            "  conntrack entries {}, inserts {}, evictions {}, insert failures {}, expirations {}",
            c.entries, c.inserts, c.evictions, c.insert_failures, c.expirations
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_workers_and_report_only_drops_that_happened() {
        let a = WorkerCounters::default();
        let b = WorkerCounters::default();
        let backend = BackendCounters::default();
        a.packets[0][FORWARDED].add(3);
        a.bytes[0][FORWARDED].add(300);
        b.packets[0][FORWARDED].add(2);
        b.bytes[0][FORWARDED].add(200);
        b.packets[1][DROPPED].add(4);
        b.bytes[1][DROPPED].add(240);
        b.drops[DropReason::Policy.index()].add(4);
        backend.tx_failed[1].add(1);
        let kernel =
            |fill_ring_empty, rx_ring_full| KernelDrops::afxdp(0, fill_ring_empty, rx_ring_full);
        backend.kernel.store(&[kernel(1, 0), kernel(0, 5)]);
        let conntrack = ConntrackStats {
            entries: 2,
            inserts: 7,
            ..ConntrackStats::default()
        };
        let totals = Totals::sum([(&a, &backend), (&b, &backend)], conntrack);
        assert_eq!(totals.packets, [[5, 0], [0, 4]]);
        assert_eq!(totals.bytes, [[500, 0], [0, 240]]);
        assert_eq!(totals.tx_failed, [0, 2]);
        let report = totals.report();
        assert!(
            report
                .contains("outside  forwarded 5 packets (500 bytes), dropped 0 packets (0 bytes)"),
            "{report}"
        );
        assert!(
            report
                .contains("inside   forwarded 0 packets (0 bytes), dropped 4 packets (240 bytes)"),
            "{report}"
        );
        assert!(report.contains("drops    policy 4\n"), "{report}");
        assert!(
            report.contains("send failed 0 (outside→inside) 2"),
            "{report}"
        );
        assert!(
            report.contains("conntrack entries 2, inserts 7"),
            "{report}"
        );
        assert_eq!(
            totals.kernel_drops,
            Some([
                KernelDrops {
                    too_long: None,
                    ..KernelDrops::afxdp(0, 2, 0)
                },
                KernelDrops {
                    too_long: None,
                    ..KernelDrops::afxdp(0, 0, 10)
                }
            ])
        );
        assert!(
            report.contains(
                "  kernel   fill ring empty 2 (outside) 0 (inside), RX ring full 0 (outside) 10 \
                 (inside)\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn no_kernel_line_when_nothing_was_dropped_or_nothing_counted() {
        let path = WorkerCounters::default();
        let backend = BackendCounters::default();
        let totals = Totals::sum([(&path, &backend)], ConntrackStats::default());
        assert_eq!(totals.kernel_drops, None);
        assert!(!totals.report().contains("kernel"));
        backend.kernel.store(&[KernelDrops::default(); 2]);
        let totals = Totals::sum([(&path, &backend)], ConntrackStats::default());
        assert_eq!(totals.kernel_drops, None, "no reason counted");
        backend.kernel.store(&[KernelDrops::afpacket(0); 2]);
        let totals = Totals::sum([(&path, &backend)], ConntrackStats::default());
        assert_eq!(totals.kernel_drops, Some([KernelDrops::afpacket(0); 2]));
        assert!(!totals.report().contains("kernel"));
    }

    #[test]
    fn afpacket_socket_queue_drops_are_summed_over_workers_and_reported() {
        let path = WorkerCounters::default();
        let (a, b) = (BackendCounters::default(), BackendCounters::default());
        a.kernel
            .store(&[KernelDrops::afpacket(7), KernelDrops::afpacket(0)]);
        b.kernel
            .store(&[KernelDrops::afpacket(5), KernelDrops::afpacket(1)]);
        let totals = Totals::sum([(&path, &a), (&path, &b)], ConntrackStats::default());
        assert_eq!(
            totals.kernel_drops,
            Some([KernelDrops::afpacket(12), KernelDrops::afpacket(1)])
        );
        let report = totals.report();
        assert!(
            report.contains("  kernel   socket queue full 12 (outside) 1 (inside)\n"),
            "{report}"
        );
        assert!(!report.contains("fill ring"), "{report}");
    }
}
