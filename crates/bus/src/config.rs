//! The bus URL and the settings of a [`crate::Bus`].

use std::time::Duration;

use crate::BusError;

/// Which broker a bus URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// Redis pub/sub (`redis://`).
    Redis,
    /// NATS core (`nats://`).
    Nats,
}

/// Where the bus is and how it behaves. Made by [`BusConfig::parse`]; the public fields can
/// be changed after.
///
/// ```
/// use ringwire_bus::{Broker, BusConfig};
///
/// let c = BusConfig::parse("nats://127.0.0.1:4222/app.ws").unwrap();
/// assert_eq!((c.broker(), c.prefix()), (Broker::Nats, "app.ws"));
/// assert_eq!(c.queue_capacity, 65_536);
/// let c = BusConfig::parse("redis://:secret@10.0.0.5").unwrap();
/// assert_eq!((c.prefix(), c.redacted_url()), ("ringwire:", "redis://:***@10.0.0.5"));
/// let e = BusConfig::parse("redis://host:99999").unwrap_err();
/// assert_eq!(e.to_string(), "bus URL redis://host:99999: the port is not a number from 1 to 65535");
/// ```
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Broker unreachable at [`crate::Bus::connect`]: wait for it (retrying with backoff)
    /// instead of failing at once. Default false.
    pub wait_at_start: bool,
    /// Publishes that may wait for the broker (while it is slow or down) before
    /// [`crate::Bus::publish`] returns false. Default 65,536.
    pub queue_capacity: usize,
    /// Payload bytes those waiting publishes may hold together, with the batch the bus
    /// thread is writing (a client buffers it while it reconnects); past it
    /// [`crate::Bus::publish`] returns false too. Default 64 MiB (without it, 65,536
    /// messages of 1 MiB could hold 64 GiB while the broker is away).
    pub queue_bytes: usize,
    /// First wait before reconnecting; doubled after each failed try. Default 100 ms.
    pub backoff_min: Duration,
    /// Longest wait between reconnect tries. Default 5 s.
    pub backoff_max: Duration,
    /// How long one try to connect may take. Default 2 s.
    pub connect_timeout: Duration,
    broker: Broker,
    url: String,
    redacted: String,
    /// `HOST:PORT`, with `USER:PASSWORD@` in front when given.
    address: String,
    prefix: String,
}

impl BusConfig {
    /// Parses `redis://HOST:PORT[/CHANNEL-PREFIX]` or `nats://HOST:PORT[/SUBJECT-PREFIX]`
    /// (`USER:PASSWORD@` may come before the host; the port defaults to 6379 and 4222). The
    /// prefix defaults to `ringwire:` (Redis) and `ringwire` (NATS: dot-separated tokens).
    /// Errors name the URL (password hidden) and what is wrong, in one line.
    pub fn parse(url: &str) -> Result<BusConfig, BusError> {
        let (broker, rest) = if let Some(rest) = url.strip_prefix("redis://") {
            (Broker::Redis, rest)
        } else if let Some(rest) = url.strip_prefix("nats://") {
            (Broker::Nats, rest)
        } else {
            return Err(bad(url, "it must start with redis:// or nats://"));
        };
        let redacted = redact(url);
        let err = |why: &str| BusError::Url { url: redacted.clone(), why: why.to_owned() };
        if rest.contains(['?', '#']) {
            return Err(err("a query or fragment is not understood"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| err("an IPv6 host needs its closing ']'"))?;
            (&hostport[..h.len() + 2], after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(err("no host"));
        }
        let port: u16 = match port {
            None => match broker {
                Broker::Redis => 6379,
                Broker::Nats => 4222,
            },
            Some(p) => {
                p.parse().ok().filter(|&p| p != 0).ok_or_else(|| err("the port is not a number from 1 to 65535"))?
            }
        };
        let prefix = match (broker, path) {
            (Broker::Redis, "") => "ringwire:".to_owned(),
            (Broker::Nats, "") => "ringwire".to_owned(),
            (Broker::Redis, p) => p.to_owned(),
            (Broker::Nats, p) => {
                if p.split('.').any(|t| t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'))
                {
                    return Err(err(
                        "the subject prefix must be dot-separated tokens without spaces, '*' or '>' (e.g. /app.ws)",
                    ));
                }
                if p.len() > MAX_NATS_PREFIX {
                    return Err(err(&format!("the subject prefix is longer than {MAX_NATS_PREFIX} bytes")));
                }
                p.to_owned()
            }
        };
        let address = match userinfo {
            Some(u) => format!("{u}@{host}:{port}"),
            None => format!("{host}:{port}"),
        };
        Ok(BusConfig {
            wait_at_start: false,
            queue_capacity: 65_536,
            queue_bytes: 64 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            broker,
            url: url.to_owned(),
            redacted,
            address,
            prefix,
        })
    }

    /// The broker this URL names.
    pub fn broker(&self) -> Broker {
        self.broker
    }

    /// The channel prefix (Redis) or subject prefix (NATS).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL with any password (NATS: a token) replaced by `***`: what logs and errors show.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `[USER:PASSWORD@]HOST:PORT`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The wait before reconnect try number `attempt` (1 for the first): `backoff_min`
    /// doubled each try, at most `backoff_max`.
    pub(crate) fn backoff(&self, attempt: usize) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30) as u32;
        self.backoff_min.saturating_mul(1 << doublings).min(self.backoff_max)
    }

    /// [`backoff`](Self::backoff) times a random factor from 0.5 to 1.5, so that the
    /// processes a broker restart disconnected at once do not all come back at once.
    pub(crate) fn backoff_jittered(&self, attempt: usize) -> Duration {
        let permille = 500 + getrandom::u32().unwrap_or(0) % 1001;
        self.backoff(attempt).mul_f64(f64::from(permille) / 1000.0)
    }
}

/// The longest NATS subject prefix: a subject is the prefix and a topic of up to 1,024
/// bytes written as up to 3,072, which must fit nats-server's 4,096-byte control line with
/// the rest of the `PUB`/`SUB` line.
const MAX_NATS_PREFIX: usize = 256;

fn bad(url: &str, why: &str) -> BusError {
    BusError::Url { url: redact(url), why: why.to_owned() }
}

/// `scheme://user:password@host` -> `scheme://user:***@host`; a NATS token
/// (`nats://token@host`) -> `nats://***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    let hidden = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None if scheme == "nats" => "***".to_owned(),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{hidden}{}", &rest[at..])
}

/// The broker channel (Redis) or subject (NATS) of `topic`.
pub(crate) fn channel(broker: Broker, prefix: &str, topic: &str) -> String {
    match broker {
        Broker::Redis => format!("{prefix}{topic}"),
        Broker::Nats => {
            let mut s = String::with_capacity(prefix.len() + 1 + topic.len());
            s.push_str(prefix);
            s.push('.');
            if topic.is_empty() {
                s.push('%');
            }
            for &b in topic.as_bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/') {
                    s.push(b as char);
                } else {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    s.push('%');
                    s.push(HEX[usize::from(b >> 4)] as char);
                    s.push(HEX[usize::from(b & 15)] as char);
                }
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = BusConfig::parse("redis://127.0.0.1:7000/app:").unwrap();
        assert_eq!((c.broker(), c.address(), c.prefix()), (Broker::Redis, "127.0.0.1:7000", "app:"));
        let c = BusConfig::parse("nats://u:p@[::1]:4223").unwrap();
        assert_eq!(
            (c.address(), c.prefix(), c.redacted_url()),
            ("u:p@[::1]:4223", "ringwire", "nats://u:***@[::1]:4223")
        );
        assert_eq!(BusConfig::parse("nats://tok@h").unwrap().redacted_url(), "nats://***@h");
        for (url, why) in [
            ("http://h", "bus URL http://h: it must start with redis:// or nats://"),
            ("redis://:pw@h:x", "bus URL redis://:***@h:x: the port is not a number from 1 to 65535"),
            ("redis://:1", "bus URL redis://:1: no host"),
            (
                "nats://h/a..b",
                "bus URL nats://h/a..b: the subject prefix must be dot-separated tokens without spaces, '*' or '>' (e.g. /app.ws)",
            ),
            (
                "nats://h/a>",
                "bus URL nats://h/a>: the subject prefix must be dot-separated tokens without spaces, '*' or '>' (e.g. /app.ws)",
            ),
            ("redis://h?db=1", "bus URL redis://h?db=1: a query or fragment is not understood"),
        ] {
            assert_eq!(BusConfig::parse(url).unwrap_err().to_string(), why);
        }
    }

    #[test]
    fn channels() {
        assert_eq!(channel(Broker::Redis, "ringwire:", "/chat/room 1"), "ringwire:/chat/room 1");
        assert_eq!(channel(Broker::Nats, "ringwire", "/chat/room-1_a"), "ringwire./chat/room-1_a");
        assert_eq!(channel(Broker::Nats, "p", "a.b *>%é"), "p.a%2Eb%20%2A%3E%25%C3%A9");
        assert_eq!(channel(Broker::Nats, "p", ""), "p.%");
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let c = BusConfig::parse("nats://h").unwrap();
        let waits: Vec<u64> = (1..=8).map(|a| c.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        for a in 1..=8 {
            let (base, j) = (c.backoff(a), c.backoff_jittered(a));
            assert!(j >= base / 2 && j <= base * 3 / 2, "attempt {a}: {j:?} against {base:?}");
        }
    }

    #[test]
    fn a_nats_prefix_that_would_not_fit_the_control_line_is_refused() {
        let long = "a".repeat(257);
        let e = BusConfig::parse(&format!("nats://h/{long}")).unwrap_err().to_string();
        assert!(e.ends_with("the subject prefix is longer than 256 bytes"), "{e}");
        assert!(BusConfig::parse(&format!("nats://h/{}", &long[1..])).is_ok());
    }
}
