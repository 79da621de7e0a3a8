//! A Server-Sent Events reader over any `BufRead`: frames are `field: value` lines ended by
//! a blank line; lines starting with `:` are comments (keep-alives).
//!
//! Only the framing lives here (no HTTP, no JSON): `id`, `event` and `data` fields (several
//! `data` lines are joined with newlines), `\n` or `\r\n` line ends. As the SSE
//! specification says, a frame without `data` is not dispatched and a frame cut off by the
//! end of the input is dropped.

use std::io::{self, BufRead};

/// One dispatched frame.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    /// The `event` field; `None` is the default type, `message`.
    pub event: Option<String>,
    pub data: String,
}

/// Reads frames one at a time from a stream.
pub struct Reader<R> {
    input: R,
    line: String,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            line: String::new(),
        }
    }

    /// The next frame, or `None` at the end of the input.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut frame = Frame::default();
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            if self.input.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                // As in the specification, a frame without data is not dispatched.
                if let Some(data) = data.take() {
                    frame.data = data;
                    return Ok(Some(frame));
                }
                frame = Frame::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = split_field(line);
            match field {
                "id" => frame.id = Some(value.to_string()),
                "event" => frame.event = Some(value.to_string()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                // `retry` and unknown fields: nothing this client needs.
                _ => {}
            }
        }
    }
}

/// `field: value` (one space after the colon is not part of the value); a line without a
/// colon is a field with an empty value.
fn split_field(line: &str) -> (&str, &str) {
    match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(text: &str) -> Vec<Frame> {
        let mut r = Reader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    fn frame(id: Option<&str>, event: Option<&str>, data: &str) -> Frame {
        Frame {
            id: id.map(str::to_string),
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn history_frames_comments_and_the_end_frame() {
        let text = ": keep-alive\n\n\
                    id: 1\nevent: history\ndata: {\"event_id\":1}\n\n\
                    : ping\n\
                    id: 2\nevent: history\ndata: {\"event_id\":2}\n\n\
                    event: end\ndata: {\"status\":\"succeeded\"}\n\n";
        assert_eq!(
            frames(text),
            vec![
                frame(Some("1"), Some("history"), "{\"event_id\":1}"),
                frame(Some("2"), Some("history"), "{\"event_id\":2}"),
                frame(None, Some("end"), "{\"status\":\"succeeded\"}"),
            ]
        );
    }

    #[test]
    fn crlf_line_ends_multi_line_data_and_no_space_after_the_colon() {
        let text = "id:7\r\nevent:history\r\ndata: a\r\ndata:b\r\n\r\n";
        assert_eq!(
            frames(text),
            vec![frame(Some("7"), Some("history"), "a\nb")]
        );
    }

    #[test]
    fn a_frame_cut_off_by_the_end_of_the_stream_is_dropped() {
        let text = "id: 1\nevent: history\ndata: {}\n\nid: 2\nevent: history\ndata: {";
        assert_eq!(frames(text), vec![frame(Some("1"), Some("history"), "{}")]);
    }

    #[test]
    fn frames_without_data_and_blank_lines_alone_dispatch_nothing() {
        let text = "\n\n\nretry: 1000\nid: 3\n\nevent: history\ndata\n\ndata: x\n\n";
        assert_eq!(
            frames(text),
            vec![frame(None, Some("history"), ""), frame(None, None, "x")]
        );
    }
}
