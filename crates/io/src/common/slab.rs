//! The connection slab and the send queue, the same in both backends.

use std::collections::VecDeque;

use bytes::{Buf as _, Bytes};

use crate::ConnId;

/// Slots per chunk of a [`Slab`].
const SLAB_CHUNK: usize = 256;

/// A slab of connection slots; an id is (index, generation), and a slot's generation moves on
/// when it is freed, so a stale id never reaches the next connection in that slot.
///
/// The slots live in fixed chunks rather than one doubling `Vec`: growing never copies the
/// connections nor leaves the old copy behind in the allocator, and the unused tail is at
/// most one chunk.
pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Slot<T>]>>,
    /// Slots handed out so far (the next fresh index).
    used: usize,
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { chunks: Vec::new(), used: 0, free: Vec::new(), len: 0 }
    }

    fn slot(&self, idx: u32) -> Option<&Slot<T>> {
        let i = idx as usize;
        if i >= self.used {
            return None;
        }
        Some(&self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK])
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<T>> {
        let i = idx as usize;
        if i >= self.used {
            return None;
        }
        Some(&mut self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK])
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let slot = self.slot_mut(idx).expect("freed slots exist");
            slot.value = Some(value);
            ConnId { idx, generation: slot.generation }
        } else {
            let idx = u32::try_from(self.used).expect("more than 2^32 connections");
            if self.used == self.chunks.len() * SLAB_CHUNK {
                self.chunks.push((0..SLAB_CHUNK).map(|_| Slot { generation: 0, value: None }).collect());
            }
            self.used += 1;
            self.slot_mut(idx).expect("just made").value = Some(value);
            ConnId { idx, generation: 0 }
        }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        match self.slot(id.idx) {
            Some(s) if s.generation == id.generation => s.value.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slot_mut(id.idx) {
            Some(s) if s.generation == id.generation => s.value.as_mut(),
            _ => None,
        }
    }

    /// The live id of slot `idx`, if it holds a connection whose generation matches the low
    /// `bits` bits of `generation` (the io_uring user_data only carries 24 bits of it).
    pub(crate) fn id_at(&self, idx: u32, generation: u32, mask: u32) -> Option<ConnId> {
        let s = self.slot(idx)?;
        (s.value.is_some() && (s.generation & mask) == (generation & mask))
            .then_some(ConnId { idx, generation: s.generation })
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let s = self.slot_mut(id.idx)?;
        if s.generation != id.generation {
            return None;
        }
        let v = s.value.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(id.idx);
        self.len -= 1;
        Some(v)
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .take(self.used)
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| ConnId { idx: i as u32, generation: s.generation })
            .collect()
    }
}

/// Output queued for one connection: shared `Bytes` chunks written in order. The front
/// chunk, once partly written, is narrowed to what is left (`Bytes::advance`: its storage
/// does not move, so a send in flight still points at valid bytes).
#[derive(Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes queued and not yet written (including any in flight).
    len: usize,
}

impl SendQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The unwritten bytes, as up to `max` slices in order.
    pub(crate) fn segments(&self, max: usize) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().take(max).map(|c| &c[..])
    }

    /// `n` bytes were written: drop the chunks that are done.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("advance past the queue");
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // All written: an idle connection keeps no queue storage.
            self.chunks = VecDeque::new();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_spans_chunks_and_reuses_slots() {
        let mut s: Slab<usize> = Slab::new();
        let ids: Vec<ConnId> = (0..SLAB_CHUNK * 2 + 3).map(|i| s.insert(i)).collect();
        assert_eq!(s.len(), ids.len());
        assert_eq!(s.chunks.len(), 3, "grows a chunk at a time");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(s.get(*id), Some(&i));
        }
        let last = *ids.last().unwrap();
        assert_eq!(s.remove(last), Some(ids.len() - 1));
        assert_eq!(s.get(last), None);
        assert_eq!(s.id_at(last.idx, last.generation, u32::MAX), None);
        let again = s.insert(7);
        assert_eq!(again.idx, last.idx);
        assert_ne!(again.generation, last.generation);
        assert_eq!(s.get(last), None, "a stale id does not reach the new connection");
        assert_eq!(s.ids().len(), ids.len());
        assert_eq!(s.get(ConnId { idx: (SLAB_CHUNK * 3) as u32, generation: 0 }), None);
    }

    #[test]
    fn send_queue_lets_go_of_its_storage_when_written() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        q.advance(4);
        assert_eq!(q.segments(8).collect::<Vec<_>>(), [&b"e"[..]]);
        assert!(q.chunks.capacity() > 0);
        q.advance(1);
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0);
    }
}
