//! The container's output in Docker's json-file format: one
//! `{"log":"...","stream":"stdout","time":"..."}` record per line, lines
//! longer than 16 KiB split into several records, rotation by size.
//!
//! Memory stays bounded: a partial line waits in a buffer of at most 16 KiB
//! per stream, and the records of one read are encoded into one reused
//! buffer and written with one `write`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::errors::{Error, Result};

/// Docker's limit: a record holds at most this many bytes of output
/// (including the line's `\n`).
pub const MAX_LINE: usize = 16 * 1024;

/// Encoded records are written out once this much has accumulated.
const FLUSH_AT: usize = 32 * 1024;

/// Which stream a record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to `<id>-json.log`, rotating it by size.
pub struct LogWriter {
    path: String,
    file: Option<File>,
    /// Bytes in the live file (written ones; `out` is not counted).
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Encoded, not yet written records.
    out: Vec<u8>,
    /// The unterminated end of each stream's output.
    partial: [Vec<u8>; 2],
}

fn open_log(path: &str) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o640).custom_flags(libc::O_CLOEXEC).open(path)
}

impl LogWriter {
    /// Open (or create) the live file at `path`; `max_size` 0 never rotates,
    /// `max_files` counts the live file (at least 1).
    pub fn open(path: &str, max_size: u64, max_files: u32) -> Result<LogWriter> {
        let file =
            open_log(path).map_err(|e| Error::os("open log", e.raw_os_error().unwrap_or(libc::EIO)).with_path(path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_owned(),
            file: Some(file),
            size,
            max_size,
            max_files: max_files.max(1),
            out: Vec::new(),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Log `data`, read from `stream` at `time`: complete lines become
    /// records, a line reaching [`MAX_LINE`] bytes is cut there, the rest
    /// waits for more output.
    pub fn write(&mut self, stream: Stream, data: &[u8], time: &str) {
        let mut partial = std::mem::take(&mut self.partial[stream as usize]);
        let mut rest = data;
        while !rest.is_empty() {
            let room = MAX_LINE - partial.len();
            let window = &rest[..rest.len().min(room)];
            let cut = match window.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if rest.len() >= room => room,
                None => {
                    if partial.capacity() == 0 {
                        partial.reserve_exact(MAX_LINE);
                    }
                    partial.extend_from_slice(rest);
                    break;
                }
            };
            if partial.is_empty() {
                self.record(stream, &rest[..cut], time);
            } else {
                partial.extend_from_slice(&rest[..cut]);
                self.record(stream, &partial, time);
                partial.clear();
            }
            rest = &rest[cut..];
        }
        self.partial[stream as usize] = partial;
        self.flush();
    }

    /// The stream is closed: log its unterminated tail, if any.
    pub fn close_stream(&mut self, stream: Stream, time: &str) {
        let partial = std::mem::take(&mut self.partial[stream as usize]);
        if !partial.is_empty() {
            self.record(stream, &partial, time);
        }
        self.flush();
    }

    /// Encode one record; rotate first if it would take the live file past
    /// `max_size`.
    fn record(&mut self, stream: Stream, content: &[u8], time: &str) {
        let start = self.out.len();
        self.out.extend_from_slice(b"{\"log\":\"");
        escape_json(content, &mut self.out);
        self.out.extend_from_slice(b"\",\"stream\":\"");
        self.out.extend_from_slice(stream.name().as_bytes());
        self.out.extend_from_slice(b"\",\"time\":\"");
        self.out.extend_from_slice(time.as_bytes());
        self.out.extend_from_slice(b"\"}\n");
        if self.max_size > 0 && self.size + self.out.len() as u64 > self.max_size && self.size + start as u64 > 0 {
            let tail = self.out.split_off(start);
            self.flush();
            self.rotate();
            self.out = tail;
        }
        if self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Write the encoded records.  A failing write (disk full) drops them:
    /// the container must not stall on its log.
    pub fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&self.out).is_ok() {
                self.size += self.out.len() as u64;
            }
        }
        self.out.clear();
        if self.out.capacity() > 2 * FLUSH_AT {
            self.out.shrink_to(FLUSH_AT);
        }
    }

    /// `.log.N-1` → `.log.N`, ..., `.log` → `.log.1` (the oldest beyond
    /// `max_files - 1` is overwritten), then a new live file.
    fn rotate(&mut self) {
        self.file = None;
        let keep = self.max_files - 1;
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..keep).rev() {
                let _ = std::fs::rename(format!("{}.{n}", self.path), format!("{}.{}", self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, format!("{}.1", self.path));
        }
        self.size = 0;
        self.file = open_log(&self.path).ok();
    }
}

/// Append `data` to `out` as the inside of a JSON string, as Docker's
/// json-file writer does: `"`, `\` and control characters escaped, `<`, `>`,
/// `&`, U+2028 and U+2029 as `\uXXXX`, invalid UTF-8 as U+FFFD.
pub fn escape_json(data: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = data;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let (ok, _) = rest.split_at(e.valid_up_to());
                // valid_up_to bytes are UTF-8 by definition.
                (std::str::from_utf8(ok).unwrap_or(""), e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        let mut from = 0;
        for (i, c) in valid.char_indices() {
            let esc: Option<&[u8]> = match c {
                '"' => Some(b"\\\""),
                '\\' => Some(b"\\\\"),
                '\n' => Some(b"\\n"),
                '\r' => Some(b"\\r"),
                '\t' => Some(b"\\t"),
                '\u{8}' => Some(b"\\b"),
                '\u{c}' => Some(b"\\f"),
                '\u{2028}' => Some(b"\\u2028"),
                '\u{2029}' => Some(b"\\u2029"),
                _ => None,
            };
            let code = c as u32;
            if esc.is_none() && !(code < 0x20 || c == '<' || c == '>' || c == '&') {
                continue;
            }
            out.extend_from_slice(&valid.as_bytes()[from..i]);
            match esc {
                Some(e) => out.extend_from_slice(e),
                None => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(code >> 4) as usize & 0xf],
                    HEX[code as usize & 0xf],
                ]),
            }
            from = i + c.len_utf8();
        }
        out.extend_from_slice(&valid.as_bytes()[from..]);
        if bad > 0 {
            out.extend_from_slice(b"\\ufffd");
        }
        rest = &rest[valid.len() + bad..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-02T03:04:05.000000006Z";

    fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON record")).collect()
    }

    fn logged(recs: &[serde_json::Value]) -> Vec<String> {
        recs.iter().map(|r| r["log"].as_str().unwrap_or("?").to_owned()).collect()
    }

    #[test]
    fn lines_become_records_and_partials_wait_for_their_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(path.to_str().expect("utf-8"), 0, 1).expect("open");
        w.write(Stream::Stdout, b"one\ntw", T);
        w.write(Stream::Stderr, b"err\n", T);
        w.write(Stream::Stdout, b"o\nthree", T);
        w.close_stream(Stream::Stdout, T);
        let recs = records(&path);
        assert_eq!(logged(&recs), ["one\n", "err\n", "two\n", "three"]);
        assert_eq!(recs[1]["stream"], "stderr");
        assert_eq!(recs[0]["stream"], "stdout");
        assert_eq!(recs[0]["time"], T);
        let first = std::fs::read_to_string(&path).expect("read");
        assert!(first.starts_with(&format!("{{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\"{T}\"}}\n")));
    }

    #[test]
    fn long_lines_are_split_at_16k_with_the_newline_in_the_last_record() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(path.to_str().expect("utf-8"), 0, 1).expect("open");
        let mut line = vec![b'x'; 40_000];
        line.push(b'\n');
        // Fed in odd chunks, as reads deliver it.
        for chunk in line.chunks(7001) {
            w.write(Stream::Stdout, chunk, T);
        }
        let exact = [vec![b'y'; MAX_LINE - 1], vec![b'\n']].concat();
        w.write(Stream::Stdout, &exact, T);
        let recs = logged(&records(&path));
        let lens: Vec<usize> = recs.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 40_000 - 2 * MAX_LINE + 1, MAX_LINE]);
        assert!(!recs[0].ends_with('\n') && !recs[1].ends_with('\n') && recs[2].ends_with('\n'));
    }

    #[test]
    fn rotation_keeps_max_files_and_never_exceeds_max_size() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c-json.log");
        let p = path.to_str().expect("utf-8");
        let mut w = LogWriter::open(p, 1000, 3).expect("open");
        for i in 0..200 {
            w.write(Stream::Stdout, format!("line {i:04}\n").as_bytes(), T);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).expect("stat").len();
            assert!(len <= 1000 && len > 0, "{n} has {len} bytes");
        }
        // The newest line is last in the live file, and .1 holds the lines just before it.
        let live = logged(&records(&path));
        assert_eq!(live.last().map(String::as_str), Some("line 0199\n"));
        let older = logged(&records(&dir.path().join("c-json.log.1")));
        let first_live: usize = live[0][5..9].parse().expect("number");
        assert_eq!(older.last().map(|l| l[5..9].parse::<usize>().expect("number")), Some(first_live - 1));
    }

    #[test]
    fn one_file_means_the_live_file_restarts() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(path.to_str().expect("utf-8"), 300, 1).expect("open");
        for i in 0..50 {
            w.write(Stream::Stderr, format!("{i}\n").as_bytes(), T);
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        assert!(std::fs::metadata(&path).expect("stat").len() <= 300);
        assert_eq!(logged(&records(&path)).last().map(String::as_str), Some("49\n"));
    }

    #[test]
    fn escaping_matches_json_and_replaces_bad_utf8() {
        let mut out = Vec::new();
        escape_json("a\"b\\c\n\t\u{1}<&>é\u{2028}".as_bytes(), &mut out);
        out.extend_from_slice(b"|");
        escape_json(b"x\xffy\xe2\x82", &mut out);
        let text = String::from_utf8(out).expect("ascii-safe output");
        assert_eq!(text, "a\\\"b\\\\c\\n\\t\\u0001\\u003c\\u0026\\u003eé\\u2028|x\\ufffdy\\ufffd");
        let parsed: String =
            serde_json::from_str(&format!("\"{}\"", text.split('|').next().unwrap_or(""))).expect("json");
        assert_eq!(parsed, "a\"b\\c\n\t\u{1}<&>é\u{2028}");
    }
}
