//! The kernel heap for kernel objects (`alloc::`): a buddy heap over a static region,
//! behind an IRQ-safe lock (buddy_system_allocator's own LockedHeap is not IRQ-safe).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::IrqSpinLock;

const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

pub struct KernelHeap {
    heap: IrqSpinLock<buddy_system_allocator::Heap<32>>,
    in_use: AtomicUsize,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: IrqSpinLock::new(buddy_system_allocator::Heap::new()),
    in_use: AtomicUsize::new(0),
};

/// Hand the static region to the heap (boot CPU, before any allocation).
pub fn init() {
    // SAFETY: HEAP_SPACE is used by nothing else; init runs once, before secondaries.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_SPACE) as usize;
        HEAP.heap.lock().init(start, HEAP_SIZE);
    }
}

/// Bytes currently allocated.
pub fn bytes_in_use() -> usize {
    HEAP.in_use.load(Ordering::Relaxed)
}

// SAFETY: blocks come from the buddy heap behind an IRQ-safe lock: each is handed out
// once, with the layout asked for, until it is given back. Both are calls of their own
// from the allocator shim (`__rust_alloc`), as they were before the heap moved here
// from mm/: where the compiler inlines them is what the benchmark suite counts.
unsafe impl GlobalAlloc for KernelHeap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.heap.lock().alloc(layout) {
            Ok(p) => {
                self.in_use.fetch_add(layout.size(), Ordering::Relaxed);
                p.as_ptr()
            }
            Err(()) => core::ptr::null_mut(),
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: GlobalAlloc contract: ptr came from alloc with this layout.
        unsafe {
            self.heap
                .lock()
                .dealloc(NonNull::new_unchecked(ptr), layout)
        };
    }
}
