//! Small allocations served from per-size free lists, in front of the module's allocator.
//!
//! A decision allocates and frees thousands of small blocks (policy values, B-tree nodes,
//! strings). A general allocator searches and coalesces on each of them; here a freed block
//! of up to [`LARGEST`] bytes goes on a list for its size class and the next request of that
//! class takes it back: a pointer pop and push, and memory that is still in the CPU's cache.
//! Everything else goes to the backing allocator unchanged.
//!
//! The lists keep at most [`MAX_LISTED_BYTES`] in all; beyond that a freed block returns to the
//! backing allocator, so a large configuration's freed parse tree cannot be hoarded here.
//!
//! The wasm module runs one thread, and that is what makes the unsynchronised lists sound: the
//! allocator is `Sync` only on a wasm target without threads.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this, which is also the alignment every listed block has.
const GRANULE: usize = 16;
const CLASSES: usize = 32;
/// The largest size (in bytes) served from a list: 512.
pub const LARGEST: usize = GRANULE * CLASSES;
/// What the lists may hold, in bytes, before freed blocks go back to the backing allocator.
pub const MAX_LISTED_BYTES: usize = 1 << 20;

pub struct SmallAlloc<A> {
    backing: A,
    lists: UnsafeCell<Lists>,
}

struct Lists {
    /// The first free block of each class; each free block holds the address of the next.
    heads: [*mut u8; CLASSES],
    listed_bytes: usize,
}

// Sound only where there is one thread: the lists are read and written without a lock.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for SmallAlloc<A> {}

impl<A> SmallAlloc<A> {
    pub const fn new(backing: A) -> Self {
        SmallAlloc {
            backing,
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                listed_bytes: 0,
            }),
        }
    }

    /// Bytes currently held on the lists.
    pub fn listed_bytes(&self) -> usize {
        // SAFETY: a read of a plain counter; no reference into the lists outlives it.
        unsafe { (*self.lists.get()).listed_bytes }
    }
}

/// The class of a layout, when a list serves it.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > GRANULE || layout.size() > LARGEST {
        return None;
    }
    Some(layout.size().saturating_sub(1) / GRANULE)
}

/// The layout every block of a class is taken from the backing allocator with.
fn class_layout(class: usize) -> Layout {
    // SAFETY: the size is a positive multiple of GRANULE, at most LARGEST; GRANULE is a power
    // of two.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, GRANULE) }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return unsafe { self.backing.alloc(layout) };
        };
        // SAFETY: one thread (see the Sync impl), and this borrow ends before any other call.
        let lists = unsafe { &mut *self.lists.get() };
        let head = lists.heads[class];
        if head.is_null() {
            return unsafe { self.backing.alloc(class_layout(class)) };
        }
        // SAFETY: a listed block is free, GRANULE-aligned and at least GRANULE bytes, and its
        // first word holds the next listed block (or null).
        lists.heads[class] = unsafe { head.cast::<*mut u8>().read() };
        lists.listed_bytes -= class_layout(class).size();
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return unsafe { self.backing.dealloc(block, layout) };
        };
        let size = class_layout(class).size();
        // SAFETY: as in `alloc`.
        let lists = unsafe { &mut *self.lists.get() };
        if lists.listed_bytes + size > MAX_LISTED_BYTES {
            return unsafe { self.backing.dealloc(block, class_layout(class)) };
        }
        // SAFETY: the caller gives the block up; it came from `alloc` with this layout, so it
        // holds a whole class block, aligned for a pointer.
        unsafe { block.cast::<*mut u8>().write(lists.heads[class]) };
        lists.heads[class] = block;
        lists.listed_bytes += size;
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: the block has at least `layout.size()` writable bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Still fits the block it has.
            (Some(old), Some(new)) if old == new => block,
            // Large to large: the backing allocator may grow in place.
            (None, None) => unsafe { self.backing.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size, and are distinct.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// The system allocator, remembering every live block's layout, and failing the test on
    /// any free that does not match an allocation.
    #[derive(Default)]
    struct Ledger {
        live: RefCell<HashMap<usize, Layout>>,
    }

    unsafe impl GlobalAlloc for Ledger {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let block = unsafe { std::alloc::System.alloc(layout) };
            assert!(self
                .live
                .borrow_mut()
                .insert(block as usize, layout)
                .is_none());
            block
        }
        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            let recorded = self.live.borrow_mut().remove(&(block as usize));
            assert_eq!(
                recorded,
                Some(layout),
                "freed with another layout, or twice"
            );
            unsafe { std::alloc::System.dealloc(block, layout) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// Fills a block with a pattern that depends on its index, and checks it.
    fn fill(block: *mut u8, size: usize, seed: usize) {
        for i in 0..size {
            unsafe { block.add(i).write((seed + i) as u8) };
        }
    }
    fn holds(block: *mut u8, size: usize, seed: usize) -> bool {
        (0..size).all(|i| unsafe { block.add(i).read() } == (seed + i) as u8)
    }

    #[test]
    fn a_freed_small_block_serves_the_next_request_of_its_class() {
        let alloc = SmallAlloc::new(Ledger::default());
        unsafe {
            let first = alloc.alloc(layout(24, 8));
            alloc.dealloc(first, layout(24, 8));
            assert_eq!(alloc.listed_bytes(), 32);
            // 17 to 32 bytes share the class, whatever the alignment up to 16.
            let again = alloc.alloc(layout(32, 16));
            assert_eq!(again, first);
            assert_eq!(alloc.listed_bytes(), 0);
            // Another class is not served from it.
            alloc.dealloc(again, layout(32, 16));
            let other = alloc.alloc(layout(40, 8));
            assert_ne!(other, first);
            alloc.dealloc(other, layout(40, 8));
        }
        assert_eq!(
            alloc.backing.live.borrow().len(),
            2,
            "both blocks are listed"
        );
    }

    #[test]
    fn large_and_overaligned_blocks_go_to_the_backing_allocator() {
        let alloc = SmallAlloc::new(Ledger::default());
        unsafe {
            for wanted in [layout(LARGEST + 1, 8), layout(64, 32), layout(4096, 4096)] {
                let block = alloc.alloc(wanted);
                assert_eq!(
                    alloc.backing.live.borrow().get(&(block as usize)),
                    Some(&wanted)
                );
                assert_eq!(block as usize % wanted.align(), 0);
                alloc.dealloc(block, wanted);
                assert!(alloc.backing.live.borrow().is_empty());
            }
        }
        assert_eq!(alloc.listed_bytes(), 0);
    }

    #[test]
    fn live_blocks_never_overlap_and_keep_their_contents() {
        let alloc = SmallAlloc::new(Ledger::default());
        // Rounds of allocating every class (and some large sizes), then freeing every other
        // block, so later rounds are served from the lists: each block must keep its pattern.
        let mut live: Vec<(*mut u8, Layout, usize)> = Vec::new();
        let mut seed = 0;
        for _round in 0..4 {
            for size in (1..=LARGEST + 64).step_by(7) {
                for align in [1, 2, 8, 16] {
                    let wanted = layout(size, align);
                    let block = unsafe { alloc.alloc(wanted) };
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0);
                    seed += 1;
                    fill(block, size, seed);
                    live.push((block, wanted, seed));
                }
            }
            let mut kept = Vec::new();
            for (i, (block, wanted, seed)) in live.drain(..).enumerate() {
                assert!(holds(block, wanted.size(), seed));
                if i % 2 == 0 {
                    unsafe { alloc.dealloc(block, wanted) };
                } else {
                    kept.push((block, wanted, seed));
                }
            }
            live = kept;
        }
        for (block, wanted, seed) in live {
            assert!(holds(block, wanted.size(), seed));
            unsafe { alloc.dealloc(block, wanted) };
        }
    }

    #[test]
    fn a_block_from_a_list_is_zeroed_when_asked() {
        let alloc = SmallAlloc::new(Ledger::default());
        unsafe {
            let dirty = alloc.alloc(layout(48, 8));
            fill(dirty, 48, 7);
            alloc.dealloc(dirty, layout(48, 8));
            let zeroed = alloc.alloc_zeroed(layout(48, 8));
            assert_eq!(zeroed, dirty);
            assert!((0..48).all(|i| zeroed.add(i).read() == 0));
            alloc.dealloc(zeroed, layout(48, 8));
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_sizes() {
        let alloc = SmallAlloc::new(Ledger::default());
        unsafe {
            let mut block = alloc.alloc(layout(10, 8));
            fill(block, 10, 3);
            let mut size = 10;
            // Within a class the block stays; across classes and into large sizes it moves.
            for new_size in [16, 17, 300, 512, 513, 5000, 700, 100, 1] {
                let moved = alloc.realloc(block, layout(size, 8), new_size);
                assert!(!moved.is_null());
                if size.max(new_size) <= 16 {
                    assert_eq!(moved, block);
                }
                assert!(holds(moved, size.min(new_size).min(10), 3));
                block = moved;
                size = new_size;
            }
            alloc.dealloc(block, layout(size, 8));
        }
    }

    #[test]
    fn the_lists_hold_no_more_than_their_bound() {
        let alloc = SmallAlloc::new(Ledger::default());
        let wanted = layout(LARGEST, 8);
        let count = MAX_LISTED_BYTES / LARGEST + 100;
        let blocks: Vec<*mut u8> = (0..count).map(|_| unsafe { alloc.alloc(wanted) }).collect();
        for block in blocks {
            unsafe { alloc.dealloc(block, wanted) };
        }
        assert_eq!(alloc.listed_bytes(), MAX_LISTED_BYTES);
        // The rest went back: only the listed blocks are still out of the backing allocator.
        assert_eq!(
            alloc.backing.live.borrow().len(),
            MAX_LISTED_BYTES / LARGEST
        );
    }
}
