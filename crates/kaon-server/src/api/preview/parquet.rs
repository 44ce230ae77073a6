//! Parquet previews read through the footer, a range at a time: the
//! footer, then the first pages of each column, never the whole file. A
//! preview reads at most [`BUDGET`] bytes however large the file is.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, StringArray, StringViewArray,
};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use kaon_artifacts::{ArtifactError, ArtifactStore, Digest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use serde_json::{Map, Number, Value};

use super::Column;

/// Bytes one preview may read, over all the parts of a folder.
pub(crate) const BUDGET: u64 = 64 << 20;
/// A folder's row count is the sum of its parts' footers, read when it
/// has at most this many parts.
const MAX_FOOTERS: usize = 100;
/// Bytes read at a time where the reader reads a stream (page headers).
const WINDOW: u64 = 64 << 10;

/// One Parquet file of an artifact.
pub(crate) struct Part {
    /// Its path inside a folder, `None` for a file artifact.
    pub path: Option<String>,
    /// Its blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// What a preview of Parquet found.
pub(crate) struct Table {
    pub schema: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub total_rows: Option<u64>,
    pub truncated: bool,
}

/// Why a Parquet preview failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The file is not Parquet, or not one this build reads.
    Unreadable {
        path: Option<String>,
        reason: String,
    },
    /// Reading the first rows would take more than [`BUDGET`] bytes.
    Budget,
    /// The artifact store failed.
    Store(ArtifactError),
}

/// What the parts of one preview share: the bytes they may still read,
/// and the first fault of the store (parquet's errors carry only text).
struct Shared {
    left: AtomicU64,
    fault: Mutex<Option<Failure>>,
}

impl Shared {
    fn fail(&self, f: Failure) -> ParquetError {
        let text = match &f {
            Failure::Budget => "read budget spent".to_string(),
            Failure::Store(e) => e.to_string(),
            Failure::Unreadable { reason, .. } => reason.clone(),
        };
        if let Ok(mut g) = self.fault.lock()
            && g.is_none()
        {
            *g = Some(f);
        }
        ParquetError::General(text)
    }
}

/// A blob read by ranges, for parquet's synchronous reader; it runs on a
/// blocking thread and waits for the async store there.
#[derive(Clone)]
struct Blob {
    blobs: ArtifactStore,
    digest: Digest,
    size: u64,
    rt: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

impl Blob {
    fn fetch(&self, start: u64, len: u64) -> Result<Bytes, ParquetError> {
        let end = start.saturating_add(len).min(self.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        let n = end - start;
        if self
            .shared
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(n))
            .is_err()
        {
            return Err(self.shared.fail(Failure::Budget));
        }
        self.rt
            .block_on(self.blobs.read_range_unchecked(&self.digest, start..end))
            .map_err(|e| self.shared.fail(Failure::Store(e)))
    }
}

impl Length for Blob {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Blob {
    type T = Window;

    fn get_read(&self, start: u64) -> Result<Window, ParquetError> {
        Ok(Window {
            blob: self.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let b = self.fetch(start, length as u64)?;
        if b.len() < length {
            return Err(ParquetError::EOF(format!(
                "wanted {length} bytes at {start}, the file has {}",
                self.size
            )));
        }
        Ok(b)
    }
}

/// A reader from an offset on, fetching [`WINDOW`] bytes at a time.
struct Window {
    blob: Blob,
    pos: u64,
    buf: Bytes,
}

impl Read for Window {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = self
                .blob
                .fetch(self.pos, WINDOW)
                .map_err(std::io::Error::other)?;
            self.pos += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// The schema, the first `rows` rows and the row count of Parquet files
/// read in order (a folder's parts, sorted by path). Blocking: call it on
/// a blocking thread, with a handle of the runtime the store runs on.
pub(crate) fn read(
    blobs: &ArtifactStore,
    parts: &[Part],
    rows: usize,
    rt: tokio::runtime::Handle,
) -> Result<Table, Failure> {
    let shared = Arc::new(Shared {
        left: AtomicU64::new(BUDGET),
        fault: Mutex::new(None),
    });
    let mut schema = None;
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut total = (parts.len() <= MAX_FOOTERS).then_some(0u64);
    let mut stopped_early = false;
    for (i, part) in parts.iter().enumerate() {
        let want = rows.saturating_sub(out.len());
        if want == 0 && total.is_none() {
            stopped_early = i < parts.len();
            break;
        }
        let blob = Blob {
            blobs: blobs.clone(),
            digest: part.digest,
            size: part.size,
            rt: rt.clone(),
            shared: shared.clone(),
        };
        let unreadable = |e: ParquetError| {
            let fault = shared.fault.lock().ok().and_then(|mut g| g.take());
            fault.unwrap_or_else(|| Failure::Unreadable {
                path: part.path.clone(),
                reason: e.to_string(),
            })
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(blob).map_err(unreadable)?;
        let n = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        total = total.map(|t| t + n);
        if schema.is_none() {
            schema = Some(
                builder
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Column {
                        name: f.name().clone(),
                        r#type: f.data_type().to_string(),
                    })
                    .collect::<Vec<_>>(),
            );
        }
        if want == 0 {
            continue;
        }
        let reader = builder
            .with_batch_size(want.clamp(1, 1024))
            .with_limit(want)
            .build()
            .map_err(unreadable)?;
        for batch in reader {
            let batch = batch.map_err(|e| unreadable(ParquetError::from(e)))?;
            let columns = batch.columns();
            for r in 0..batch.num_rows() {
                if out.len() >= rows {
                    break;
                }
                out.push(columns.iter().map(|c| cell(c, r)).collect());
            }
        }
        if n > want as u64 {
            stopped_early = true;
        }
    }
    let truncated = match total {
        Some(t) => t > out.len() as u64,
        None => stopped_early,
    };
    Ok(Table {
        schema: schema.unwrap_or_default(),
        rows: out,
        total_rows: total,
        truncated,
    })
}

/// One value of a column as JSON: numbers, booleans and strings as
/// themselves, lists and structs as arrays and objects, anything else
/// (dates, timestamps, decimals, binary, maps) as arrow displays it.
/// Floats that JSON cannot hold (NaN, infinities) are text.
pub(crate) fn cell(col: &ArrayRef, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    fn float(f: f64) -> Value {
        Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
    }
    match col.data_type() {
        DataType::Boolean => col
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map_or(Value::Null, |a| Value::Bool(a.value(i))),
        DataType::Int8 => Value::from(col.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::from(col.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::from(col.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => Value::from(col.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => Value::from(col.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(i)),
        DataType::Float16 => float(f64::from(col.as_primitive::<Float16Type>().value(i))),
        DataType::Float32 => float(f64::from(col.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => col
            .as_any()
            .downcast_ref::<StringArray>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::LargeUtf8 => col
            .as_any()
            .downcast_ref::<LargeStringArray>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::Utf8View => col
            .as_any()
            .downcast_ref::<StringViewArray>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::List(_) => {
            let inner = col.as_list::<i32>().value(i);
            Value::Array((0..inner.len()).map(|j| cell(&inner, j)).collect())
        }
        DataType::LargeList(_) => {
            let inner = col.as_list::<i64>().value(i);
            Value::Array((0..inner.len()).map(|j| cell(&inner, j)).collect())
        }
        DataType::FixedSizeList(..) => {
            let inner = col.as_fixed_size_list().value(i);
            Value::Array((0..inner.len()).map(|j| cell(&inner, j)).collect())
        }
        DataType::Struct(fields) => {
            let s = col.as_struct();
            let mut m = Map::new();
            for (f, c) in fields.iter().zip(s.columns()) {
                m.insert(f.name().clone(), cell(c, i));
            }
            Value::Object(m)
        }
        _ => match ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()) {
            Ok(f) => Value::String(f.value(i).to_string()),
            Err(e) => Value::String(format!("({e})")),
        },
    }
}
