//! The append-only history of one run: every entry stamped with its position, simulated time and
//! node, rendered as one compact, human-readable line, hashed into the run's trace hash, kept in
//! a bounded ring for failure timelines and, with [`TraceMode::File`], written to a trace file.
//!
//! Owns: [`History`], the line format ([`render`]), the trace hash, trace files and their
//! comparison ([`trace_file_hash`], [`first_difference`]). It does not check anything (checkers
//! receive each [`TimedEntry`] from [`History::append`]) and does not decide what is recorded.
//!
//! The line format is `{at_ms:>9} {node:<9} {body}`; bodies are in `render.rs`. Byte strings are
//! hex when short and `len+hash` when long, frames are their kind plus checkpoints plus the hash
//! of their bytes, bundles are entry count, bytes and hash, so a line stays short while any change
//! of content still changes the line. A body longer than [`MAX_BODY_CHARS`] is cut and ends with
//! the hash of the whole body. Control characters are escaped: a line never holds a newline.
//!
//! The **trace hash** is FNV-1a 64 over every line followed by `\n`, which is exactly the FNV-1a
//! 64 of the trace file's bytes, so a trace file can be checked against the hash a run reported.

mod render;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub use render::{render, render_body, MAX_BODY_CHARS};

use crate::run::{Entry, TimedEntry, TraceMode};
use crate::seed::Fnv64;

/// Lines the ring keeps by default.
pub const DEFAULT_RING_LINES: usize = 4_096;

/// A trace file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot create trace file {}: {error}", path.display())]
    Create { path: PathBuf, error: std::io::Error },
    #[error("cannot write trace file {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("cannot read trace file {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
}

/// A timeline being captured around one history position.
#[derive(Clone, Debug)]
struct Capture {
    /// The last position the capture takes.
    until: u64,
    lines: Vec<String>,
}

/// The history of one run. See the module comment.
pub struct History {
    hasher: Fnv64,
    next_seq: u64,
    capacity: usize,
    ring: VecDeque<(TimedEntry, String)>,
    file: Option<(PathBuf, BufWriter<File>)>,
    write_error: Option<HistoryError>,
    capture: Option<Capture>,
}

impl History {
    /// A history with the default ring size; with [`TraceMode::File`] the file is created (or
    /// truncated) now.
    pub fn new(mode: TraceMode) -> Result<History, HistoryError> {
        History::with_ring(mode, DEFAULT_RING_LINES)
    }

    /// A history whose ring keeps the last `ring_lines` lines (at least 1).
    pub fn with_ring(mode: TraceMode, ring_lines: usize) -> Result<History, HistoryError> {
        let file = match mode {
            TraceMode::Ring => None,
            TraceMode::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|error| HistoryError::Create { path: path.clone(), error })?;
                }
                let f = File::create(&path)
                    .map_err(|error| HistoryError::Create { path: path.clone(), error })?;
                Some((path, BufWriter::new(f)))
            }
        };
        Ok(History {
            hasher: Fnv64::new(),
            next_seq: 0,
            capacity: ring_lines.max(1),
            ring: VecDeque::new(),
            file,
            write_error: None,
            capture: None,
        })
    }

    /// Append an entry produced by `node` at simulated time `at_ms`; returns it with its
    /// position.
    pub fn append(&mut self, at_ms: u64, node: impl Into<String>, entry: Entry) -> &TimedEntry {
        let timed = TimedEntry { seq: self.next_seq, at_ms, node: node.into(), entry };
        self.next_seq += 1;
        let line = render(&timed);
        self.hasher.write(line.as_bytes());
        self.hasher.write(b"\n");
        if let (Some((path, out)), None) = (&mut self.file, &self.write_error) {
            if let Err(error) = writeln!(out, "{line}") {
                self.write_error = Some(HistoryError::Write { path: path.clone(), error });
            }
        }
        if let Some(capture) = &mut self.capture {
            if timed.seq <= capture.until {
                capture.lines.push(line.clone());
            }
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back((timed, line));
        match self.ring.back() {
            Some((timed, _)) => timed,
            None => unreachable!("an entry was just pushed"),
        }
    }

    /// The trace hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// Number of entries appended.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// The last `n` lines still in the ring, oldest first.
    pub fn tail(&self, n: usize) -> Vec<&str> {
        let skip = self.ring.len().saturating_sub(n);
        self.ring.iter().skip(skip).map(|(_, l)| l.as_str()).collect()
    }

    /// The entries still in the ring, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &TimedEntry> {
        self.ring.iter().map(|(e, _)| e)
    }

    /// The lines of positions `seq - before ..= seq + after` that are still in the ring.
    pub fn lines_around(&self, seq: u64, before: u64, after: u64) -> Vec<&str> {
        let lo = seq.saturating_sub(before);
        let hi = seq.saturating_add(after);
        self.ring
            .iter()
            .filter(|(e, _)| e.seq >= lo && e.seq <= hi)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    /// Start capturing the timeline around position `seq` (usually a violation's): the lines of
    /// the `before` positions up to `seq` that are still in the ring now, and the next `after`
    /// lines as they are appended. Replaces an earlier capture. See [`History::captured`].
    pub fn capture_around(&mut self, seq: u64, before: u64, after: u64) {
        let lines = self.lines_around(seq, before, after).into_iter().map(str::to_string).collect();
        self.capture = Some(Capture { until: seq.saturating_add(after), lines });
    }

    /// The captured timeline (empty without a capture).
    pub fn captured(&self) -> Vec<String> {
        self.capture.as_ref().map(|c| c.lines.clone()).unwrap_or_default()
    }

    /// Flush the trace file (if any) and report the first write error.
    pub fn finish(&mut self) -> Result<(), HistoryError> {
        if let Some(e) = self.write_error.take() {
            return Err(e);
        }
        if let Some((path, out)) = &mut self.file {
            out.flush().map_err(|error| HistoryError::Write { path: path.clone(), error })?;
        }
        Ok(())
    }

    /// The trace file, when there is one.
    pub fn trace_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }
}

/// The trace hash of a trace file: FNV-1a 64 of its bytes (equal to the hash its run reported).
pub fn trace_file_hash(path: &Path) -> Result<u64, HistoryError> {
    let read_err = |error| HistoryError::Read { path: path.to_path_buf(), error };
    let mut file = BufReader::new(File::open(path).map_err(read_err)?);
    let mut hasher = Fnv64::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.write(buf.get(..n).unwrap_or_default());
    }
}

/// The first line where two trace files differ: `(line number from 1, line of a, line of b)`,
/// a missing line being `None`. `Ok(None)` when they are equal.
pub type TraceDifference = (usize, Option<String>, Option<String>);

/// Compare two trace files line by line. See [`TraceDifference`].
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<TraceDifference>, HistoryError> {
    let open = |p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .map_err(|error| HistoryError::Read { path: p.to_path_buf(), error })
    };
    let mut la = open(a)?.lines();
    let mut lb = open(b)?.lines();
    let mut n = 0;
    loop {
        n += 1;
        let x = la
            .next()
            .transpose()
            .map_err(|error| HistoryError::Read { path: a.to_path_buf(), error })?;
        let y = lb
            .next()
            .transpose()
            .map_err(|error| HistoryError::Read { path: b.to_path_buf(), error })?;
        match (x, y) {
            (None, None) => return Ok(None),
            (x, y) if x != y => return Ok(Some((n, x, y))),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
