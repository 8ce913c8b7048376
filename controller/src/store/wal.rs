//! The durable store's write-ahead log: `<data dir>/burst.wal`, beside the redb file.
//!
//! A group of writes is durable once its records are appended here and `fdatasync`ed: one write and one sync,
//! where a durable redb commit costs a dozen page writes and one or two syncs. The same writes go into redb in
//! commits that are not synced; a checkpoint (a synced redb commit) makes them durable there, after which the
//! log is emptied.
//!
//! # Format
//! Records follow each other: `len: u32 LE`, `crc32(payload): u32 LE`, then `payload` of `len` bytes: a tag
//! (1 put, 2 delete), the job id's length (`u16 LE`) and bytes, and for a put the encoded job record.
//!
//! The file is made longer ahead of the records, in zeros ([`GROW_BYTES`] at a time), so that an append
//! overwrites bytes already in the file: `fdatasync` then writes the data alone, not the file's size with it (a
//! fifth less CPU per sync here, and a shorter wait). Zeros after the records end a replay like a torn record.
//!
//! # Guarantees
//! - Replay applies the records in the order they were appended, each a whole put or delete of one job, so the
//!   store ends as the last acknowledged write of each job left it; replaying records that redb already has
//!   (a crash between a checkpoint and emptying the log) changes nothing.
//! - A record cut short by a crash (never acknowledged: its group's sync had not returned) ends the replay;
//!   a bad checksum does too.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The log's file inside the data dir.
pub const FILE_NAME: &str = "burst.wal";

const PUT: u8 = 1;
const DELETE: u8 = 2;
/// Bytes before a record's payload: its length and checksum.
const HEADER: usize = 8;
/// How much longer the file is made, in zeros, when the records reach its end.
const GROW_BYTES: u64 = 1 << 20;

/// One logged change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Put { id: String, record: Vec<u8> },
    Delete(String),
}

/// Appends a put of job `id` to `buf`, its job record written by `write_record` straight into `buf`; returns
/// where the job record's bytes lie in `buf`.
pub fn encode_put(buf: &mut Vec<u8>, id: &str, write_record: impl FnOnce(&mut Vec<u8>)) -> Range<usize> {
    let start = begin(buf, PUT, id);
    let record = buf.len();
    write_record(buf);
    finish(buf, start);
    record..buf.len()
}

/// Appends a delete of job `id` to `buf`.
pub fn encode_delete(buf: &mut Vec<u8>, id: &str) {
    let start = begin(buf, DELETE, id);
    finish(buf, start);
}

/// Writes a record's header (length and checksum left to [`finish`]), tag and id; returns where it starts.
/// Job ids are the controller's own (at most 128 bytes), far below the `u16` length.
fn begin(buf: &mut Vec<u8>, tag: u8, id: &str) -> usize {
    let id = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.push(tag);
    buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
    buf.extend_from_slice(id);
    start
}

/// Fills in the length and checksum of the record that starts at `start` and ends at the end of `buf`.
fn finish(buf: &mut [u8], start: usize) {
    let payload = &buf[start + HEADER..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// The whole records at the start of `bytes`, up to the first one cut short or damaged, and how many bytes they
/// took.
fn decode(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(rest[4..HEADER].try_into().unwrap_or_default());
        let Some(payload) = rest.get(HEADER..HEADER + len) else { break };
        if len < 3 || crc32fast::hash(payload) != crc {
            break;
        }
        let id_len = u16::from_le_bytes([payload[1], payload[2]]) as usize;
        let Some(id) = payload.get(3..3 + id_len).and_then(|b| std::str::from_utf8(b).ok()) else { break };
        let entry = match payload[0] {
            PUT => Entry::Put { id: id.to_string(), record: payload[3 + id_len..].to_vec() },
            DELETE => Entry::Delete(id.to_string()),
            _ => break,
        };
        entries.push(entry);
        rest = &rest[HEADER + len..];
    }
    (entries, bytes.len() - rest.len())
}

pub struct Wal {
    file: File,
    path: PathBuf,
    /// Bytes of records: where the next append goes.
    len: u64,
    /// The file's length: the records, then zeros.
    allocated: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`; returns it with the entries it holds and how many bytes after them
    /// are not whole records (a torn or damaged tail, ignored; the zeros the file was made longer with are not
    /// counted).
    pub fn open(dir: &Path) -> std::io::Result<(Wal, Vec<Entry>, usize)> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (entries, used) = decode(&bytes);
        let ignored = bytes[used..].iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
        Ok((Wal { file, path, len: used as u64, allocated: bytes.len() as u64 }, entries, ignored))
    }

    /// Appends `records` (made by [`encode_put`] and [`encode_delete`]) and returns once they are on disk.
    pub fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        let end = self.len + records.len() as u64;
        if end > self.allocated {
            // Zeros up to the next whole step past the records; synced with them below.
            let grown = end.div_ceil(GROW_BYTES) * GROW_BYTES;
            let zeros = vec![0u8; (grown - self.allocated) as usize];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.allocated = grown;
        }
        self.file.write_all_at(records, self.len)?;
        self.file.sync_data()?;
        self.len = end;
        Ok(())
    }

    /// Empties the log, once everything in it is durable elsewhere.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.allocated = 0;
        Ok(())
    }

    /// Bytes of records in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Vec<Entry> {
        decode(bytes).0
    }

    #[test]
    fn records_decode_in_order_up_to_a_torn_or_damaged_one() {
        let mut buf = Vec::new();
        let first = encode_put(&mut buf, "a", |b| b.extend_from_slice(b"first"));
        assert_eq!(&buf[first], b"first");
        encode_delete(&mut buf, "b");
        encode_put(&mut buf, "a", |_| {});
        let whole = vec![
            Entry::Put { id: "a".into(), record: b"first".to_vec() },
            Entry::Delete("b".into()),
            Entry::Put { id: "a".into(), record: Vec::new() },
        ];
        assert_eq!(entries(&buf), whole);
        // A record cut anywhere ends the replay before it.
        let second_end = buf.len() - (HEADER + 3 + 1);
        for cut in second_end + 1..buf.len() {
            assert_eq!(entries(&buf[..cut]), whole[..2], "cut at {cut}");
        }
        // A flipped byte in the first payload ends it at once.
        let mut damaged = buf.clone();
        damaged[HEADER + 4] ^= 1;
        assert_eq!(entries(&damaged), vec![]);
        // Zeros after the records (a preallocated or reused tail) end it too.
        let mut padded = buf.clone();
        padded.extend_from_slice(&[0; 64]);
        assert_eq!(entries(&padded), whole);
    }

    #[test]
    fn the_log_appends_reopens_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, entries, ignored) = Wal::open(dir.path()).unwrap();
        assert!(entries.is_empty() && wal.len() == 0 && ignored == 0);
        let mut buf = Vec::new();
        encode_put(&mut buf, "x", |b| b.push(b'1'));
        wal.append(&buf).unwrap();
        wal.append(&buf).unwrap();
        drop(wal);
        let (mut wal, entries, ignored) = Wal::open(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(wal.len(), 2 * buf.len() as u64);
        assert_eq!(ignored, 0, "the zeros the file was made longer with are not a damaged tail");
        assert_eq!(std::fs::metadata(wal.path()).unwrap().len(), GROW_BYTES, "made longer ahead of the records");
        // Appends after a reopen go after the records, not after the zeros.
        wal.append(&buf).unwrap();
        assert_eq!(Wal::open(dir.path()).unwrap().1.len(), 3);
        wal.clear().unwrap();
        wal.append(&buf).unwrap();
        drop(wal);
        assert_eq!(Wal::open(dir.path()).unwrap().1.len(), 1, "appends after a clear start at the beginning");
        // Records longer than a step of zeros still land whole.
        let (mut wal, _, _) = Wal::open(dir.path()).unwrap();
        let mut big = Vec::new();
        encode_put(&mut big, "big", |b| b.extend(std::iter::repeat_n(7u8, GROW_BYTES as usize + 10)));
        wal.append(&big).unwrap();
        drop(wal);
        let (_, entries, ignored) = Wal::open(dir.path()).unwrap();
        assert_eq!((entries.len(), ignored), (2, 0));
    }
}
