//! HTTP/1.x bodies: by Content-Length, chunked coding (RFC 9112, section 7.1), until the close,
//! or "blind" when a capture gap hid the framing.

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

pub(super) enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    /// Framing unknown (a gap hid it): bytes are counted, the end is found heuristically:
    /// `length` unseen bytes, a chunked terminator ending a chunk, or the next message start.
    Blind {
        length: Option<u64>,
        chunked: bool,
        seen: u64,
    },
}

pub(super) enum Chunked {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    Data(u64),
    /// The CRLF after chunk data (`true` once the CR was seen).
    DataEnd(bool),
    /// Trailer lines up to the empty line; the length of the current line.
    Trailers(usize),
}

/// What feeding bytes (or a gap) to a body did.
#[derive(Default)]
pub(super) struct Step {
    pub(super) consumed: u64,
    pub(super) counted: u64,
    pub(super) done: bool,
    /// Framing lost at this point (chunked): the reason.
    pub(super) lost: Option<&'static str>,
}

impl Body {
    /// Reads body bytes from `data`; `keep` gets the body's own bytes (no chunk framing).
    pub(super) fn feed(&mut self, data: &[u8], keep: &mut dyn FnMut(&[u8])) -> Step {
        match self {
            Body::Length(rem) => {
                let n = (*rem).min(data.len() as u64);
                *rem -= n;
                keep(&data[..n as usize]);
                Step {
                    consumed: n,
                    counted: n,
                    done: *rem == 0,
                    lost: None,
                }
            }
            Body::UntilClose => {
                let n = data.len() as u64;
                keep(data);
                Step {
                    consumed: n,
                    counted: n,
                    ..Step::default()
                }
            }
            Body::Blind { seen, .. } => {
                let n = data.len() as u64;
                *seen = seen.saturating_add(n);
                Step {
                    consumed: n,
                    ..Step::default()
                }
            }
            Body::Chunked(c) => c.feed(data, keep),
        }
    }

    pub(super) fn gap(&mut self, n: u64) -> Step {
        match self {
            Body::Length(rem) => {
                let k = (*rem).min(n);
                *rem -= k;
                Step {
                    consumed: k,
                    counted: k,
                    done: *rem == 0,
                    lost: None,
                }
            }
            Body::UntilClose => Step {
                consumed: n,
                counted: n,
                ..Step::default()
            },
            Body::Blind { seen, .. } => {
                *seen = seen.saturating_add(n);
                Step {
                    consumed: n,
                    ..Step::default()
                }
            }
            Body::Chunked(Chunked::Data(rem)) => {
                let k = (*rem).min(n);
                *rem -= k;
                if *rem == 0 {
                    *self = Body::Chunked(Chunked::DataEnd(false));
                }
                if k < n {
                    Step {
                        consumed: k,
                        counted: k,
                        done: false,
                        lost: Some("chunked framing inside a capture gap: body size approximate"),
                    }
                } else {
                    Step {
                        consumed: k,
                        counted: k,
                        ..Step::default()
                    }
                }
            }
            Body::Chunked(_) => Step {
                lost: Some("chunked framing inside a capture gap: body size approximate"),
                ..Step::default()
            },
        }
    }
}

impl Chunked {
    pub(super) fn feed(&mut self, data: &[u8], keep: &mut dyn FnMut(&[u8])) -> Step {
        let mut step = Step::default();
        let mut i = 0usize;
        while i < data.len() {
            match self {
                Chunked::Size(line) => {
                    let b = data[i];
                    i += 1;
                    if b == b'\n' {
                        match parse_chunk_size(line) {
                            Some(0) => *self = Chunked::Trailers(0),
                            Some(n) => *self = Chunked::Data(n),
                            None => {
                                step.lost = Some("bad chunk size line: body size approximate");
                                break;
                            }
                        }
                    } else if line.len() >= MAX_CHUNK_LINE {
                        step.lost = Some("chunk size line too long: body size approximate");
                        break;
                    } else {
                        line.push(b);
                    }
                }
                Chunked::Data(rem) => {
                    let n = (*rem).min((data.len() - i) as u64);
                    *rem -= n;
                    keep(&data[i..i + n as usize]);
                    i += n as usize;
                    step.counted += n;
                    if *rem == 0 {
                        *self = Chunked::DataEnd(false);
                    }
                }
                Chunked::DataEnd(cr) => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\r' if !*cr => *cr = true,
                        b'\n' => *self = Chunked::Size(Vec::new()),
                        _ => {
                            step.lost =
                                Some("chunk data not followed by CRLF: body size approximate");
                            break;
                        }
                    }
                }
                Chunked::Trailers(line_len) => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\n' if *line_len == 0 => {
                            step.done = true;
                            break;
                        }
                        b'\n' => *line_len = 0,
                        b'\r' => {}
                        _ => *line_len += 1,
                    }
                }
            }
        }
        // After a framing loss the rest of the data goes to the blind body that follows.
        step.consumed = i as u64;
        step
    }
}

/// `1a;ext=1\r` -> 26.
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = line[..end].trim_ascii();
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in hex {
        let d = (b as char).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(u64::from(d))?;
    }
    Some(v)
}
