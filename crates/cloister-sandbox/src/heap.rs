//! The JavaScript heap's allocator: Rust's global allocator behind a byte budget that records
//! every refusal.
//!
//! QuickJS reports a failed allocation in whatever way the failing code path can: a
//! catchable `InternalError: out of memory`, a `RangeError`, or (when even the error object
//! cannot be allocated) a bare `null` thrown. None of these says reliably that the limit was
//! the cause, and measuring usage after the fact does not either (unwinding frees what the
//! call built). So the budget is enforced here, where every allocation passes, and a
//! refusal sets a flag the engine reads when the call ends: any call during which an
//! allocation was refused failed on its memory limit, whatever it threw or caught.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// Shared view of a heap's state, kept by the engine.
#[derive(Clone, Default)]
pub struct HeapWatch {
    refused: Rc<Cell<bool>>,
    used: Rc<Cell<usize>>,
}

impl HeapWatch {
    /// Whether an allocation was refused since the last [`HeapWatch::reset`].
    pub fn refused(&self) -> bool {
        self.refused.get()
    }

    /// Forgets earlier refusals (at the start of each call).
    pub fn reset(&self) {
        self.refused.set(false);
    }

    /// Bytes currently allocated by the JavaScript heap.
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

/// Rust's global allocator with a byte budget (the function's memory limit).
pub struct LimitedHeap {
    inner: RustAllocator,
    limit: usize,
    watch: HeapWatch,
}

impl LimitedHeap {
    /// A heap of at most `limit` bytes, and the watch that observes it.
    pub fn new(limit: usize) -> (Self, HeapWatch) {
        let watch = HeapWatch::default();
        let heap = Self {
            inner: RustAllocator,
            limit,
            watch: watch.clone(),
        };
        (heap, watch)
    }

    /// Whether `extra` more bytes fit; records a refusal when they do not.
    fn admit(&self, extra: usize) -> bool {
        let fits = self
            .watch
            .used
            .get()
            .checked_add(extra)
            .is_some_and(|total| total <= self.limit);
        if !fits {
            self.watch.refused.set(true);
        }
        fits
    }

    /// Accounts for a finished allocation (or records the allocator's own refusal).
    fn took(&self, ptr: *mut u8) -> *mut u8 {
        if ptr.is_null() {
            self.watch.refused.set(true);
        } else {
            // SAFETY: `ptr` was just returned by the inner allocator.
            let size = unsafe { RustAllocator::usable_size(ptr) };
            self.watch.used.set(self.watch.used.get() + size);
        }
        ptr
    }
}

// SAFETY: every pointer comes from (and goes back to) `RustAllocator`, which upholds the
// trait's alignment and size contract; this wrapper only refuses requests and counts bytes.
unsafe impl Allocator for LimitedHeap {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.alloc(size);
        self.took(ptr)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            self.watch.refused.set(true);
            return std::ptr::null_mut();
        };
        if !self.admit(total) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.calloc(count, size);
        self.took(ptr)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller passes a pointer this allocator returned.
        let size = unsafe { RustAllocator::usable_size(ptr) };
        self.watch
            .used
            .set(self.watch.used.get().saturating_sub(size));
        // SAFETY: as above.
        unsafe { self.inner.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned.
        let old = unsafe { RustAllocator::usable_size(ptr) };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above; on failure the old block stays valid and counted.
        let new = unsafe { self.inner.realloc(ptr, new_size) };
        if new.is_null() {
            self.watch.refused.set(true);
            return new;
        }
        // SAFETY: `new` was just returned by the inner allocator.
        let size = unsafe { RustAllocator::usable_size(new) };
        self.watch
            .used
            .set(self.watch.used.get().saturating_sub(old) + size);
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller passes a pointer this allocator returned.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_enforced_and_refusals_are_recorded() {
        let (mut heap, watch) = LimitedHeap::new(1024);
        let a = heap.alloc(512);
        assert!(!a.is_null());
        assert!(watch.used() >= 512);
        assert!(!watch.refused());
        assert!(heap.alloc(1024).is_null());
        assert!(watch.refused());
        watch.reset();
        // SAFETY: `a` came from this heap.
        let b = unsafe { heap.realloc(a, 4096) };
        assert!(b.is_null(), "growing past the budget is refused");
        assert!(watch.refused());
        // SAFETY: `a` is still valid after a refused realloc.
        unsafe { heap.dealloc(a) };
        assert_eq!(watch.used(), 0);
        assert!(heap.calloc(usize::MAX, 2).is_null());
    }
}
