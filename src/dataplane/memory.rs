//! Memory for the packet path's large tables, on 2 MiB pages where the kernel gives them.
//!
//! Why: the connection table is sized for its maximum (21 MB by default) and read at random,
//! so on 4 KiB pages nearly every hit is a TLB miss as well as a cache miss (in a VM, a
//! two-dimensional page walk). On 2 MiB pages the whole default table fits in the TLB.
//! Transparent huge pages in `madvise` mode (the common default) give them only to memory
//! advised `MADV_HUGEPAGE`, and only in 2 MiB-aligned ranges the mapping covers whole.
//!
//! Data flow: [`chunks`] maps one anonymous region for several same-typed arrays (one per
//! shard: 64 shards of 330 KB would each be too small for a huge page), starting on a
//! 2 MiB boundary when it is that large, advises it, then writes every element's default
//! value, so that the first touch of each 2 MiB takes a huge page now rather than on the
//! packet path. Each [`Chunk`] derefs to its own slice; the region is unmapped when the last
//! chunk is dropped. When the advice fails, or the kernel has huge pages off, the region
//! stays on normal pages and works the same.
//!
//! Also the packet path's one vector comparison, [`equal_lanes`]: a worker's flow cache
//! finds a key's line among its set's sixteen by comparing the set's line of tags at once.
#![allow(unsafe_code)]

use std::fmt;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// The huge page size transparent huge pages use on x86-64 (and arm64 with 4 KiB pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// One anonymous mapping, unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range owned by nobody else; it reads nothing through
// its pointer, and unmapping from any thread is the same system call.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` gives no access to the memory at all.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            unmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One array of a region made by [`chunks`]: `len` initialized `T`s, disjoint from every
/// other chunk of the region.
pub struct Chunk<T> {
    ptr: NonNull<T>,
    len: usize,
    _mapping: Arc<Mapping>,
}

// SAFETY: a chunk owns its elements exclusively (no other chunk covers them), like a
// `Box<[T]>`; the shared `Mapping` is `Send + Sync`.
unsafe impl<T: Send> Send for Chunk<T> {}
// SAFETY: `&Chunk<T>` gives only `&[T]`, as `&Box<[T]>` does.
unsafe impl<T: Sync> Sync for Chunk<T> {}

impl<T> Deref for Chunk<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is aligned for `T` and points at `len` initialized elements that
        // live as long as `_mapping`, which `self` holds; no `&mut` to them exists while
        // `self` is borrowed shared.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for Chunk<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference: the
        // elements belong to no other chunk.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> fmt::Debug for Chunk<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk").field("len", &self.len).finish()
    }
}

/// Arrays of `lens[i]` default `T`s, all in one mapping advised for huge pages when it is at
/// least [`HUGE_PAGE`] long. `None` when the memory cannot be had (or `T` needs more than
/// page alignment).
pub fn chunks<T: Copy + Default>(lens: &[usize]) -> Option<Vec<Chunk<T>>> {
    let total = lens
        .iter()
        .try_fold(0usize, |sum, &len| sum.checked_add(len))?;
    let bytes = total.checked_mul(size_of::<T>())?;
    let page = page_size();
    if align_of::<T>() > page {
        return None;
    }
    let mapping = Arc::new(map(bytes.checked_next_multiple_of(page)?)?);
    // A zero-length mapping has a dangling base aligned for bytes only.
    let base = if mapping.len == 0 {
        NonNull::<T>::dangling()
    } else {
        mapping.base.cast::<T>()
    };
    let mut chunks = Vec::new();
    chunks.try_reserve_exact(lens.len()).ok()?;
    let mut offset = 0;
    for &len in lens {
        // `offset + len <= total`, so the pointer stays inside the mapping (or is the
        // dangling base of an empty one, with every `len` zero or `T` zero-sized).
        let ptr = NonNull::new(base.as_ptr().wrapping_add(offset))?;
        for i in 0..len {
            // SAFETY: element `offset + i` lies inside the mapping, which is writable and
            // aligned for `T` (page-aligned base, `size_of::<T>()` a multiple of its
            // alignment); `T: Copy`, so nothing is dropped by overwriting.
            unsafe { ptr.as_ptr().add(i).write(T::default()) };
        }
        chunks.push(Chunk {
            ptr,
            len,
            _mapping: Arc::clone(&mapping),
        });
        offset += len;
    }
    Some(chunks)
}

/// A fresh anonymous read-write mapping of `len` bytes (a multiple of the page size), on
/// a 2 MiB boundary and advised for huge pages when it is at least [`HUGE_PAGE`] long.
fn map(len: usize) -> Option<Mapping> {
    if len == 0 {
        return Some(Mapping {
            base: NonNull::dangling(),
            len: 0,
        });
    }
    if len < HUGE_PAGE {
        return map_anonymous(len).map(|base| Mapping { base, len });
    }
    // Map one huge page more than needed, then give back what lies outside the aligned
    // range: the kernel only uses huge pages for aligned 2 MiB ranges inside the mapping.
    let reserved = len.checked_add(HUGE_PAGE)?;
    let start = map_anonymous(reserved)?;
    let start_addr = start.as_ptr() as usize;
    let aligned_addr = start_addr.next_multiple_of(HUGE_PAGE);
    let head = aligned_addr - start_addr;
    let tail = reserved - head - len;
    let aligned = start.as_ptr().wrapping_add(head);
    if head > 0 {
        unmap(start.as_ptr().cast(), head);
    }
    if tail > 0 {
        unmap(aligned.wrapping_add(len).cast(), tail);
    }
    let base = NonNull::new(aligned)?;
    advise_huge_pages(base, len);
    Some(Mapping { base, len })
}

fn map_anonymous(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: a new private anonymous mapping at an address the kernel picks touches no
    // existing memory; the result is checked for failure before use.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(addr.cast())
}

/// Gives back `len` bytes at `addr`, which this module mapped and no chunk uses.
fn unmap(addr: *mut libc::c_void, len: usize) {
    // SAFETY: callers pass a page-aligned range of a mapping made by `map_anonymous` that
    // no live reference points into (the trimmed ends, or a region whose last chunk is
    // gone).
    let result = unsafe { libc::munmap(addr, len) };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            len,
            "cannot unmap table memory"
        );
    }
}

/// Asks for huge pages on `len` bytes at `base`; on failure the memory stays on normal
/// pages, which is only slower.
fn advise_huge_pages(base: NonNull<u8>, len: usize) {
    // SAFETY: the range is a whole mapping this module just made; MADV_HUGEPAGE changes
    // only how the kernel backs it, never its contents.
    let result = unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            len,
            "huge pages not available for table memory, using normal pages"
        );
    } else if transparent_huge_pages_off() {
        tracing::debug!(
            len,
            "transparent huge pages are off, table memory uses normal pages"
        );
    }
}

/// Whether the kernel's transparent huge pages are set to `never`.
fn transparent_huge_pages_off() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[never]"))
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// Lanes compared by [`equal_lanes`]: one 64-byte cache line of 32-bit values.
pub const LANES: usize = 16;

/// Which of the lanes equal `value`: bit `i` is set when `lanes[i] == value`. Four lanes per
/// instruction (SSE2) instead of a compare, a shift and an or per lane, which is what the
/// compiler makes of the loop.
#[inline]
pub fn equal_lanes(lanes: &[u32; LANES], value: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16,
            _mm_packs_epi32, _mm_set1_epi32,
        };
        // SAFETY: SSE2 is part of every x86-64. The four unaligned loads read the 64 bytes
        // `lanes` borrows, 16 at a time from its start, and nothing past them.
        unsafe {
            let want = _mm_set1_epi32(value as i32);
            let at = lanes.as_ptr().cast::<__m128i>();
            let quarter = |i: usize| _mm_cmpeq_epi32(_mm_loadu_si128(at.add(i)), want);
            // Each equal lane is -1 and stays -1 through the saturating packs, to one byte
            // per lane in lane order; the byte mask is the lane mask.
            let low = _mm_packs_epi32(quarter(0), quarter(1));
            let high = _mm_packs_epi32(quarter(2), quarter(3));
            _mm_movemask_epi8(_mm_packs_epi16(low, high)) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        lanes
            .iter()
            .enumerate()
            .fold(0, |mask, (i, &lane)| mask | (u32::from(lane == value) << i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lanes_sets_the_bit_of_every_equal_lane_and_no_other() {
        let scalar = |lanes: &[u32; LANES], value: u32| {
            (0..LANES).fold(0u32, |mask, i| mask | (u32::from(lanes[i] == value) << i))
        };
        let mut lanes = [0u32; LANES];
        assert_eq!(equal_lanes(&lanes, 0), 0xffff);
        assert_eq!(equal_lanes(&lanes, 1), 0);
        // Every single lane, values with the sign bit set (the packs saturate signed) and
        // values that differ only in one byte.
        for i in 0..LANES {
            let mut one = [0x8000_0001u32; LANES];
            one[i] = 0x8000_0101;
            assert_eq!(equal_lanes(&one, 0x8000_0101), 1 << i);
            assert_eq!(equal_lanes(&one, 0x8000_0001), 0xffff & !(1 << i));
        }
        let mut x = 0x9e37_79b9u32;
        for _ in 0..1000 {
            for lane in lanes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *lane = u32::MAX - 3 + x % 4;
            }
            for value in (u32::MAX - 4)..=u32::MAX {
                assert_eq!(equal_lanes(&lanes, value), scalar(&lanes, value));
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(align(64))]
    struct Line([u64; 8]);

    impl Default for Line {
        fn default() -> Self {
            Line([7; 8])
        }
    }

    #[test]
    fn chunks_have_their_lengths_and_default_values_and_do_not_overlap() {
        // Tiny (no advice), just under and over a huge page, and several huge pages.
        let per_page = HUGE_PAGE / size_of::<Line>();
        for lens in [
            vec![1],
            vec![3, 0, 5],
            vec![per_page - 1],
            vec![per_page / 2, per_page / 2 + 1],
            vec![per_page; 3],
        ] {
            let mut chunks = chunks::<Line>(&lens).unwrap();
            assert_eq!(chunks.len(), lens.len());
            for (i, chunk) in chunks.iter_mut().enumerate() {
                assert_eq!(chunk.len(), lens[i]);
                assert!(
                    chunk.iter().all(|line| *line == Line::default()),
                    "{lens:?}"
                );
                assert_eq!(chunk.as_ptr() as usize % align_of::<Line>(), 0);
                chunk.fill(Line([i as u64; 8]));
            }
            for (i, chunk) in chunks.iter().enumerate() {
                assert!(chunk.iter().all(|line| *line == Line([i as u64; 8])));
            }
        }
    }

    #[test]
    fn a_region_of_a_huge_page_or_more_starts_on_a_huge_page_boundary() {
        let chunks = chunks::<u8>(&[HUGE_PAGE + 1, 10]).unwrap();
        assert_eq!(chunks[0].as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(
            chunks[1].as_ptr() as usize,
            chunks[0].as_ptr() as usize + HUGE_PAGE + 1
        );
        assert!(chunks.iter().all(|chunk| chunk.iter().all(|&b| b == 0)));
    }

    #[test]
    fn empty_and_zero_sized_requests_work_and_impossible_ones_fail() {
        let empty = chunks::<u64>(&[0, 0]).unwrap();
        assert!(empty.iter().all(|chunk| chunk.is_empty()));
        let units = chunks::<()>(&[5]).unwrap();
        assert_eq!(units[0].len(), 5);
        assert!(chunks::<u64>(&[usize::MAX / 4]).is_none());
        assert!(chunks::<u8>(&[usize::MAX, 1]).is_none());
    }

    #[test]
    fn chunks_outlive_each_other_in_any_order() {
        let mut chunks = chunks::<u32>(&[HUGE_PAGE, 4]).unwrap();
        let last = chunks.pop().unwrap();
        drop(chunks);
        assert_eq!(&*last, &[0, 0, 0, 0]);
    }
}
