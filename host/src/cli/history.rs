//! `history ID`: an execution's events, every page; `history ID --follow`: the events as
//! they happen, from the Server-Sent Events stream, until the execution ends.
//!
//! Following survives a dropped stream: once connected, it reconnects with
//! `?after=<last event id>` a few times (the count starts again whenever an event arrives)
//! and never prints an event twice.

use std::io::BufReader;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::Request;
use super::sse::{Frame, Reader};
use super::table::line;
use super::{render, Ctx, Error, Exit};

/// Reconnections in a row without an event before `--follow` gives up.
const MAX_RECONNECTS: u32 = 5;

/// The pause before the first reconnection; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// `history ID`: every page, as one table (or, with `--json`, one `{"events": [...]}`).
pub fn show(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let path = ["v1", "executions", id, "history"];
    let mut events = Vec::new();
    let mut cursor = None;
    loop {
        let reply = ctx
            .client
            .send(Request::get(&path).query("cursor", cursor.take()))?;
        events.extend(reply.array("events")?.iter().cloned());
        cursor = reply.next_cursor();
        if cursor.is_none() {
            break;
        }
    }
    if ctx.json {
        let doc = json!({"events": events, "next_cursor": null});
        ctx.print_json(&doc.to_string())?;
    } else {
        ctx.print(&render::events_table(&events))?;
    }
    Ok(Exit::Success)
}

/// `history ID --follow`: print each event as it arrives (a table row, or a JSON line),
/// then exit by the execution's final status.
pub fn follow(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let mut follower = Follower {
        ctx,
        id,
        last_event: None,
        header_printed: false,
        connected: false,
    };
    let mut drops = 0;
    loop {
        let before = follower.last_event;
        let cause = match follower.stream_once() {
            Ok(execution) => return follower.finish(&execution),
            // Nothing to reconnect to if it never connected (no server, no such route).
            Err(e) if !follower.connected || !retryable(&e) => return Err(no_stream_route(e)),
            Err(e) => e,
        };
        if follower.last_event != before {
            drops = 0;
        }
        drops += 1;
        if drops > MAX_RECONNECTS {
            return Err(Error::Http(format!(
                "the event stream of execution {id} kept dropping before the execution \
                 ended ({MAX_RECONNECTS} reconnections failed); last: {cause}"
            )));
        }
        std::thread::sleep(FIRST_BACKOFF * 2u32.pow(drops - 1));
    }
}

/// The API's answer for a route it does not have, said in terms of the command.
fn no_stream_route(e: Error) -> Error {
    match e {
        Error::Api {
            status: 404,
            ref message,
            ..
        } if message == "no such route" => Error::Usage(format!(
            "this server has no event stream (GET /v1/executions/{{id}}/events), so \
                 --follow cannot work with it ({e})"
        )),
        e => e,
    }
}

/// Worth reconnecting after: the connection, not the request, failed.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. } | Error::Http(_) => true,
        Error::Api { status, .. } => matches!(status, 502..=504),
        Error::Usage(_) | Error::Response(_) | Error::Output(_) => false,
    }
}

/// The state of one `--follow`: what has been printed so far.
struct Follower<'a> {
    ctx: &'a Ctx,
    id: &'a str,
    /// The last event id printed: the `after` of the next connection.
    last_event: Option<u64>,
    header_printed: bool,
    /// Whether a stream was ever opened: only then is a failure worth reconnecting after.
    connected: bool,
}

impl Follower<'_> {
    /// One connection: print its events until the `end` frame, whose execution is
    /// returned; a stream that ends without it is an `Error::Http`.
    fn stream_once(&mut self) -> Result<Value, Error> {
        let path = ["v1", "executions", self.id, "events"];
        let resp = self.ctx.client.open(
            Request::get(&path)
                .query("after", self.last_event.map(|n| n.to_string()))
                .header("accept", Some("text/event-stream".to_string()))
                .timeout(None),
        )?;
        self.connected = true;
        let mut frames = Reader::new(BufReader::new(resp));
        loop {
            let frame = frames
                .next_frame()
                .map_err(|e| Error::Http(format!("reading the event stream: {e}")))?
                .ok_or_else(|| Error::Http("the event stream ended early".to_string()))?;
            if let Some(execution) = self.handle(frame)? {
                return Ok(execution);
            }
        }
    }

    /// Print a `history` frame's event (once); an `end` frame's execution is returned.
    /// Other event types are ignored.
    fn handle(&mut self, frame: Frame) -> Result<Option<Value>, Error> {
        match frame.event.as_deref() {
            Some("history") => {
                self.event(&parse(&frame.data, "history event")?)?;
                Ok(None)
            }
            Some("end") => Ok(Some(parse(&frame.data, "end of the stream")?)),
            _ => Ok(None),
        }
    }

    fn event(&mut self, event: &Value) -> Result<(), Error> {
        let id = event.get("event_id").and_then(Value::as_u64);
        if let (Some(id), Some(last)) = (id, self.last_event) {
            if id <= last {
                return Ok(()); // sent again after a reconnection
            }
        }
        if self.ctx.json {
            self.ctx.print_json(&event.to_string())?;
        } else {
            if !self.header_printed {
                self.ctx
                    .print(&line(&render::EVENT_WIDTHS, &render::EVENT_HEADERS))?;
                self.header_printed = true;
            }
            let row = render::event_row(event);
            self.ctx.print(&line(&render::EVENT_WIDTHS, &row))?;
        }
        if id.is_some() {
            self.last_event = id;
        }
        Ok(())
    }

    fn finish(&self, execution: &Value) -> Result<Exit, Error> {
        if !self.ctx.json {
            self.ctx.print(&render::ending(execution))?;
        }
        Ok(render::exit_for(execution))
    }
}

fn parse(data: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str(data).map_err(|e| {
        Error::Response(format!(
            "the {what} is not JSON ({e}): {}",
            super::table::truncate(data, 200)
        ))
    })
}
