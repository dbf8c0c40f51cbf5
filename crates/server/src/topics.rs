//! One worker's topic index: which of its connections subscribe to which topic.
//!
//! Only the worker's own thread touches it (no lock). A topic lists its subscribers in
//! a vector, so a publish walks a slice; each connection lists its topics with its
//! place in each topic's vector, so an unsubscribe or a close is O(topics of that
//! connection), not O(subscribers of the topic).

use ringwire_drive::Slots;
use ringwire_io::ConnId;
use std::collections::HashMap;
use std::sync::Arc;

/// The longest topic name, in bytes. Topic names reach brokers as channel and subject
/// names: 1,024 bytes keeps a NATS subject (each byte written as up to three) within
/// nats-server's 4,096-byte control line.
pub const MAX_TOPIC_LEN: usize = 1024;

/// Why [`Ws::subscribe`](crate::Ws::subscribe) refused a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The connection already subscribes to
    /// [`max_topics_per_connection`](crate::ServerConfig::max_topics_per_connection) topics.
    #[error("the connection already subscribes to {limit} topics")]
    TooMany {
        /// The limit in force.
        limit: usize,
    },
    /// The name is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic name of {len} bytes is longer than {MAX_TOPIC_LEN}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
}

struct Topic {
    name: Arc<str>,
    subscribers: Vec<ConnId>,
}

/// A connection's subscription: the topic's slot and the connection's place in the
/// topic's subscriber vector.
#[derive(Clone, Copy)]
struct Sub {
    topic: u32,
    at: u32,
}

#[derive(Default)]
pub(crate) struct Topics {
    by_name: HashMap<Arc<str>, u32>,
    topics: Vec<Option<Topic>>,
    free: Vec<u32>,
    /// Only connections that subscribe to something have an entry.
    by_conn: Slots<Vec<Sub>>,
    /// Subscriptions, all topics together.
    subscriptions: usize,
}

/// What a subscribe or unsubscribe changed for the worker as a whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing: already (or not) subscribed.
    None,
    /// The connection's subscription changed; the worker's topic set did not.
    Conn,
    /// The worker got its first subscriber of this topic, or lost its last one.
    Topic(Arc<str>),
}

impl Topics {
    fn find(&self, topic: &str) -> Option<u32> {
        self.by_name.get(topic).copied()
    }

    fn topic_mut(&mut self, t: u32) -> &mut Topic {
        self.topics[t as usize].as_mut().expect("indexed topics are present")
    }

    /// Subscribes `id` to `topic`.
    pub(crate) fn subscribe(&mut self, id: ConnId, topic: &str, limit: usize) -> Result<Change, TopicError> {
        if topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len: topic.len() });
        }
        let existing = self.find(topic);
        let subs = self.by_conn.get(&id).map_or(&[][..], Vec::as_slice);
        if existing.is_some_and(|t| subs.iter().any(|s| s.topic == t)) {
            return Ok(Change::None);
        }
        if subs.len() >= limit {
            return Err(TopicError::TooMany { limit });
        }
        let (t, created) = match existing {
            Some(t) => (t, None),
            None => {
                let name: Arc<str> = topic.into();
                let entry = Topic { name: Arc::clone(&name), subscribers: Vec::new() };
                let t = match self.free.pop() {
                    Some(t) => {
                        self.topics[t as usize] = Some(entry);
                        t
                    }
                    None => {
                        self.topics.push(Some(entry));
                        (self.topics.len() - 1) as u32
                    }
                };
                self.by_name.insert(Arc::clone(&name), t);
                (t, Some(name))
            }
        };
        let subscribers = &mut self.topic_mut(t).subscribers;
        let at = subscribers.len() as u32;
        subscribers.push(id);
        self.subscriptions += 1;
        match self.by_conn.get_mut(&id) {
            Some(subs) => subs.push(Sub { topic: t, at }),
            None => self.by_conn.insert(id, vec![Sub { topic: t, at }]),
        }
        Ok(created.map_or(Change::Conn, Change::Topic))
    }

    /// Unsubscribes `id` from `topic`.
    pub(crate) fn unsubscribe(&mut self, id: ConnId, topic: &str) -> Change {
        let Some(t) = self.find(topic) else { return Change::None };
        let Some(subs) = self.by_conn.get_mut(&id) else { return Change::None };
        let Some(i) = subs.iter().position(|s| s.topic == t) else { return Change::None };
        let sub = subs.swap_remove(i);
        if subs.is_empty() {
            self.by_conn.remove(&id);
        }
        self.remove_subscriber(sub).map_or(Change::Conn, Change::Topic)
    }

    /// Drops every subscription of `id` (it closed); returns the topics the worker no
    /// longer has any subscriber of.
    pub(crate) fn remove_conn(&mut self, id: ConnId, mut gone: impl FnMut(Arc<str>)) {
        let Some(subs) = self.by_conn.remove(&id) else { return };
        for sub in subs {
            if let Some(name) = self.remove_subscriber(sub) {
                gone(name);
            }
        }
    }

    /// Takes one subscriber out of its topic's vector (the last one moves into its place
    /// and its own record is updated); the topic's name when that was its last one.
    fn remove_subscriber(&mut self, sub: Sub) -> Option<Arc<str>> {
        self.subscriptions -= 1;
        let subscribers = &mut self.topic_mut(sub.topic).subscribers;
        subscribers.swap_remove(sub.at as usize);
        if let Some(&moved) = subscribers.get(sub.at as usize) {
            let record = self.by_conn.get_mut(&moved).and_then(|s| s.iter_mut().find(|s| s.topic == sub.topic));
            record.expect("every subscriber has a record").at = sub.at;
            return None;
        }
        if !subscribers.is_empty() {
            return None;
        }
        let topic = self.topics[sub.topic as usize].take().expect("indexed topics are present");
        self.by_name.remove(&topic.name);
        self.free.push(sub.topic);
        Some(topic.name)
    }

    pub(crate) fn is_subscribed(&self, id: ConnId, topic: &str) -> bool {
        match (self.find(topic), self.by_conn.get(&id)) {
            (Some(t), Some(subs)) => subs.iter().any(|s| s.topic == t),
            _ => false,
        }
    }

    /// `id`'s topics, in the order subscribed (but for unsubscribes, which move the last
    /// one into the gap).
    pub(crate) fn topics_of(&self, id: ConnId) -> impl Iterator<Item = &Arc<str>> {
        let subs = self.by_conn.get(&id).map_or(&[][..], Vec::as_slice);
        subs.iter().map(|s| &self.topics[s.topic as usize].as_ref().expect("indexed topics are present").name)
    }

    /// The connections of this worker that subscribe to `topic`.
    pub(crate) fn subscribers(&self, topic: &str) -> &[ConnId] {
        match self.find(topic) {
            Some(t) => &self.topics[t as usize].as_ref().expect("indexed topics are present").subscribers,
            None => &[],
        }
    }

    /// Topics with at least one subscriber here.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Subscriptions here, all topics together.
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ids as the event loop makes them: distinct slot indexes.
    fn ids(n: usize) -> Vec<ConnId> {
        (0..n).map(ConnId::for_tests).collect()
    }

    #[test]
    fn subscribe_unsubscribe_and_close() {
        let [a, b, c] = ids(3)[..] else { unreachable!() };
        let mut t = Topics::default();
        assert_eq!(t.subscribe(a, "x", 8), Ok(Change::Topic("x".into())));
        assert_eq!(t.subscribe(a, "x", 8), Ok(Change::None), "twice is once");
        assert_eq!(t.subscribe(b, "x", 8), Ok(Change::Conn));
        assert_eq!(t.subscribe(c, "x", 8), Ok(Change::Conn));
        assert_eq!(t.subscribe(b, "y", 8), Ok(Change::Topic("y".into())));
        assert_eq!(t.subscribers("x"), &[a, b, c]);
        assert!(t.is_subscribed(b, "y") && !t.is_subscribed(a, "y") && !t.is_subscribed(a, "z"));
        // a leaves x: c moves into a's place and its record follows.
        assert_eq!(t.unsubscribe(a, "x"), Change::Conn);
        assert_eq!(t.unsubscribe(a, "x"), Change::None);
        assert_eq!(t.subscribers("x"), &[c, b]);
        assert_eq!(t.unsubscribe(c, "x"), Change::Conn, "c's moved record still finds it");
        let mut gone = Vec::new();
        t.remove_conn(b, |n| gone.push(n));
        gone.sort();
        assert_eq!(gone, vec![Arc::from("x"), Arc::from("y")]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.subscribers("x"), &[] as &[ConnId]);
        // Freed slots are reused.
        assert_eq!(t.subscribe(a, "z", 8), Ok(Change::Topic("z".into())));
        assert_eq!(t.topics.len(), 2);
    }

    #[test]
    fn limits() {
        let a = ids(1)[0];
        let mut t = Topics::default();
        t.subscribe(a, "1", 2).unwrap();
        t.subscribe(a, "2", 2).unwrap();
        assert_eq!(t.subscribe(a, "3", 2), Err(TopicError::TooMany { limit: 2 }));
        assert_eq!(t.subscribe(a, "2", 2), Ok(Change::None), "already subscribed is not over the limit");
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(t.subscribe(a, &long, 8), Err(TopicError::TooLong { len: MAX_TOPIC_LEN + 1 }));
        assert_eq!(t.topics_of(a).map(|n| &**n).collect::<Vec<_>>(), ["1", "2"]);
    }

    proptest! {
        /// Any sequence of subscribes, unsubscribes and closes leaves the index equal to
        /// a plain set of (connection, topic) pairs.
        #[test]
        fn index_matches_a_model(ops in prop::collection::vec((0u8..3, 0usize..6, 0u8..4), 0..200)) {
            let conns = ids(6);
            let mut t = Topics::default();
            let mut model = std::collections::BTreeSet::new();
            for (op, c, topic) in ops {
                let name = topic.to_string();
                match op {
                    0 => { t.subscribe(conns[c], &name, 8).unwrap(); model.insert((c, topic)); }
                    1 => { t.unsubscribe(conns[c], &name); model.remove(&(c, topic)); }
                    _ => { t.remove_conn(conns[c], |_| {}); model.retain(|&(mc, _)| mc != c); }
                }
                for topic in 0..4u8 {
                    let mut got: Vec<usize> = t.subscribers(&topic.to_string()).iter().map(|id| id.index()).collect();
                    got.sort();
                    let want: Vec<usize> = model.iter().filter(|&&(_, mt)| mt == topic).map(|&(c, _)| c).collect();
                    prop_assert_eq!(got, want);
                }
                prop_assert_eq!(t.len(), model.iter().map(|&(_, mt)| mt).collect::<std::collections::BTreeSet<_>>().len());
            }
        }
    }
}
