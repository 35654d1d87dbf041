#![allow(dead_code)]

//! A global allocator that counts, per thread, the allocations made, the
//! bytes they asked for, and the peak of live heap bytes: `measure` runs a
//! closure and reports the count and the peak, `allocated` the count and
//! the bytes. Counts, not timings: they are the same on every run, however
//! busy the machine.
//!
//! Included with `#[path]` by the tests and examples that measure memory
//! (a global allocator is one per binary, so it is not in `common`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(by: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + by;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards every call to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        let _ = BYTES.try_with(|n| n.set(n.get() + layout.size()));
        grow(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grow(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        let _ = BYTES.try_with(|n| n.set(n.get() + new_size));
        grow(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What `f` allocated on this thread: its result, the number of
/// allocations, and the peak of live bytes above what was live when it
/// started (memory allocated before, such as an input moved in, does not
/// count).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    let out = f();
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    let peak = (PEAK.with(Cell::get) - live).max(0) as usize;
    (out, allocations, peak)
}

/// What `f` allocated on this thread: its result, the number of
/// allocations (a reallocation counts as one), and the bytes they asked
/// for (a reallocation counts its new size: a buffer copied again and
/// again shows as the sum of its sizes).
pub fn allocated<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let (count, bytes) = (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get));
    let out = f();
    (
        out,
        ALLOCATIONS.with(Cell::get) - count,
        BYTES.with(Cell::get) - bytes,
    )
}
