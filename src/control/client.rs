//! A blocking client of the control socket, used by `wxcardctl` and the tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::protocol::{Command, PROTO_MAJOR};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {path}: {source} (is wxcardd running? are you in its group?)")]
    Connect {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection failed or timed out.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something this client does not understand.
    #[error("control socket: {0}")]
    Protocol(String),
    /// The daemon refused this connection (peer credentials).
    #[error("refused by wxcardd: {0}")]
    Forbidden(String),
}

/// An open connection.
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// The daemon's VERSION line.
    pub version: Value,
}

impl ControlClient {
    /// Connects and reads the VERSION line; refuses a different major version.
    pub fn connect(path: &Path, timeout: Option<Duration>) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(timeout)?;
        let writer = stream.try_clone()?;
        let mut client = ControlClient {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            version: Value::Null,
        };
        let first = client.read_line()?;
        if first["class"] == "ERROR" {
            let message = first["error"]["message"].as_str().unwrap_or("").to_owned();
            return Err(if first["error"]["code"] == "forbidden" {
                ClientError::Forbidden(message)
            } else {
                ClientError::Protocol(message)
            });
        }
        if first["class"] != "VERSION" {
            return Err(ClientError::Protocol(format!(
                "expected VERSION, got {first}"
            )));
        }
        if first["proto_major"].as_u64() != Some(u64::from(PROTO_MAJOR)) {
            return Err(ClientError::Protocol(format!(
                "daemon speaks protocol {}, this client {PROTO_MAJOR}",
                first["proto_major"]
            )));
        }
        client.version = first;
        Ok(client)
    }

    /// Reads the next line as JSON (an answer or an event).
    pub fn read_line(&mut self) -> Result<Value, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection".into(),
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| ClientError::Protocol(format!("not JSON: {e}: {line:?}")))
    }

    /// Sends a raw line (for tests of malformed input).
    pub fn send_raw(&mut self, line: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(line)?;
        Ok(())
    }

    /// Sends a command and returns its answer line (`RESULT` or `ERROR`), skipping events.
    pub fn request(&mut self, command: &Command) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&command.to_request(Value::from(id)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        loop {
            let answer = self.read_line()?;
            if answer["class"] == "EVENT" {
                continue;
            }
            if answer["id"] == id || answer["class"] == "ERROR" {
                return Ok(answer);
            }
        }
    }
}
