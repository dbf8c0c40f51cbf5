//! Heap allocations on the receive hot path, counted with a counting global allocator:
//! a whole frame in one read must not cost more allocations than it does now (the
//! message's own buffer and the event queue), however the idle state is laid out.

use ringwire_conn::{Config, ConnInfo, Connection, Event, OpCode, Role};
use ringwire_frame::{FrameHeader, apply_mask};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; it only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

/// `count` masked text frames of `size` bytes, as a client sends them.
fn client_wire(size: usize, count: usize) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let header = FrameHeader { mask: Some(key), ..FrameHeader::new(OpCode::Text, size as u64) };
    let mut payload = vec![b'x'; size];
    apply_mask(&mut payload, key, 0);
    [header.encode().as_bytes(), &payload[..]].concat().repeat(count)
}

/// Allocations for `reads` fed one by one to a server connection, each drained of its
/// events; and the bytes of messages delivered.
fn per_read(reads: &[&[u8]]) -> (usize, usize) {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::server(), ConnInfo::new(), now);
    let mut got = 0;
    let n = allocations(|| {
        for read in reads {
            s.handle_read(read, now);
            while let Some(e) = s.poll_event() {
                if let Event::Message(m) = e {
                    got += m.len();
                }
            }
        }
    });
    (n, got)
}

#[test]
fn a_whole_frame_in_one_read_costs_its_buffer_and_the_event_queue() {
    for size in [32, 16 << 10] {
        let wire = client_wire(size, 1);
        let reads = vec![wire.as_slice(); 100];
        let (n, got) = per_read(&reads);
        assert_eq!(got, 100 * size);
        assert!(n <= 2 * 100, "{size}-byte frames: {n} allocations for 100 reads");
    }
}

#[test]
fn many_whole_frames_in_one_read_cost_a_buffer_each() {
    let wire = client_wire(32, 1000);
    let (n, got) = per_read(&[&wire]);
    assert_eq!(got, 32 * 1000);
    // One buffer per message; the event queue (kept while the application drains it),
    // and the rest of the read held in a box while the events before it are taken.
    assert!(n <= 1000 + 3, "{n} allocations for 1000 frames in one read");
}
