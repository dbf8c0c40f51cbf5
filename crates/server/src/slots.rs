//! A worker's connections, indexed by the event loop's slab index.

use ringwire_io::ConnId;

/// Per-connection state stored at `id.index()`, checked against the full id (index and
/// generation) so a stale id never reaches a newer connection in the same slot.
/// Cheaper than a hash map on the per-message path, and 8 bytes of key per entry.
pub(crate) struct Slots<T> {
    entries: Vec<Option<(ConnId, T)>>,
    len: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Self {
        Self { entries: Vec::new(), len: 0 }
    }

    /// Stores `value` for `id`, replacing what `id` (or a stale id in its slot) had.
    pub(crate) fn insert(&mut self, id: ConnId, value: T) {
        let i = id.index();
        if i >= self.entries.len() {
            self.entries.resize_with(i + 1, || None);
        }
        if self.entries[i].replace((id, value)).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn get_mut(&mut self, id: &ConnId) -> Option<&mut T> {
        match self.entries.get_mut(id.index()) {
            Some(Some((stored, value))) if stored == id => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: &ConnId) -> Option<T> {
        let slot = self.entries.get_mut(id.index())?;
        if slot.as_ref().is_some_and(|(stored, _)| stored == id) {
            self.len -= 1;
            slot.take().map(|(_, v)| v)
        } else {
            None
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored (id, value), in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.entries.iter().filter_map(|e| e.as_ref().map(|(id, v)| (*id, v)))
    }
}
