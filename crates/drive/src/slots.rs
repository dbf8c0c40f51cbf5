//! A worker's connections, indexed by the event loop's slab index.

use ringwire_io::ConnId;

/// Entries per chunk of the table.
const CHUNK: usize = 256;

/// One slot: the id it holds and its state.
type Entry<T> = Option<(ConnId, T)>;

/// Per-connection state stored at `id.index()`, checked against the full id (index and
/// generation) so a stale id never reaches a newer connection in the same slot.
/// Cheaper than a hash map on the per-message path, and 8 bytes of key per entry.
///
/// The table grows in fixed chunks rather than by doubling one vector: growing never
/// copies the entries nor leaves the old copy behind in the allocator, and the unused
/// tail is at most one chunk.
pub struct Slots<T> {
    chunks: Vec<Box<[Entry<T>]>>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slots<T> {
    /// An empty table (allocates nothing).
    pub fn new() -> Self {
        Self { chunks: Vec::new(), len: 0 }
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut Entry<T>> {
        self.chunks.get_mut(i / CHUNK).map(|c| &mut c[i % CHUNK])
    }

    /// Stores `value` for `id`, replacing what `id` (or a stale id in its slot) had.
    pub fn insert(&mut self, id: ConnId, value: T) {
        let i = id.index();
        while self.chunks.len() <= i / CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        let e = self.entry_mut(i).expect("chunk just added");
        if e.replace((id, value)).is_none() {
            self.len += 1;
        }
    }

    /// The value stored for `id` (not for a stale id in its slot).
    pub fn get(&self, id: &ConnId) -> Option<&T> {
        match self.chunks.get(id.index() / CHUNK).map(|c| &c[id.index() % CHUNK]) {
            Some(Some((stored, value))) if stored == id => Some(value),
            _ => None,
        }
    }

    /// The value stored for `id`, to change.
    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut T> {
        match self.entry_mut(id.index()) {
            Some(Some((stored, value))) if stored == id => Some(value),
            _ => None,
        }
    }

    /// Takes the value stored for `id` out.
    pub fn remove(&mut self, id: &ConnId) -> Option<T> {
        let slot = self.entry_mut(id.index())?;
        if slot.as_ref().is_some_and(|(stored, _)| stored == id) {
            let value = slot.take().map(|(_, v)| v);
            self.len -= 1;
            value
        } else {
            None
        }
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored (id, value), in slot order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut T)> {
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).filter_map(|e| e.as_mut().map(|(id, v)| (*id, v)))
    }

    /// Every stored (id, value), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.chunks.iter().flat_map(|c| c.iter()).filter_map(|e| e.as_ref().map(|(id, v)| (*id, v)))
    }
}
