//! Helpers shared by the tests: a connection fed with deterministic timestamps.
use super::{Direction, HttpConnection, HttpExchange};

/// Feeds chunks with timestamps 10 ns apart: call entry `t + 1`, return `t + 2`.
pub(super) struct Feeder {
    pub conn: HttpConnection,
    t: u64,
}

impl Feeder {
    pub fn new() -> Self {
        Feeder {
            conn: HttpConnection::new(),
            t: 1000,
        }
    }

    /// A connection that keeps up to `limit` body bytes per message.
    pub fn with_body_limit(limit: usize) -> Self {
        Feeder {
            conn: HttpConnection::with_body_limit(limit),
            t: 1000,
        }
    }

    /// One fully captured chunk; returns its (start_ns, ts_ns).
    pub fn send(&mut self, data: &[u8]) -> (u64, u64) {
        self.chunk(Direction::Send, data, data.len())
    }

    pub fn recv(&mut self, data: &[u8]) -> (u64, u64) {
        self.chunk(Direction::Recv, data, data.len())
    }

    /// A chunk of `data.len()` bytes of which only the first `captured` are carried.
    pub fn chunk(&mut self, dir: Direction, data: &[u8], captured: usize) -> (u64, u64) {
        self.t += 10;
        let (start, ts) = (self.t + 1, self.t + 2);
        let len = u32::try_from(data.len()).expect("test chunk fits u32");
        self.conn
            .feed(dir, start, ts, len, &data[..captured.min(data.len())]);
        (start, ts)
    }

    /// `data` as the library would see it with reads/writes of `call` bytes and a capture of
    /// `cap` bytes; returns the last chunk's timestamps.
    pub fn calls(&mut self, dir: Direction, data: &[u8], call: usize, cap: usize) -> (u64, u64) {
        let mut last = (0, 0);
        for c in data.chunks(call) {
            last = self.chunk(dir, c, cap);
        }
        last
    }

    pub fn take(&mut self) -> Vec<HttpExchange> {
        self.conn.take_exchanges(false)
    }

    pub fn flush(&mut self) -> Vec<HttpExchange> {
        self.conn.take_exchanges(true)
    }
}

/// The single element, with a helpful panic otherwise.
pub(super) fn one(mut v: Vec<HttpExchange>) -> HttpExchange {
    assert_eq!(v.len(), 1, "expected one exchange, got {v:#?}");
    v.remove(0)
}

pub(super) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}
