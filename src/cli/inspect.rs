//! What `kaon artifacts inspect` shows of a file: Parquet read with
//! arrow/parquet, text as its first lines.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::util::pretty::pretty_format_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Schema, rows and row groups of Parquet files (the parts of one table),
/// then the first `rows` rows of the first.
pub fn parquet(files: &[PathBuf], rows: usize) -> Result<()> {
    let mut total_rows = 0i64;
    let mut groups = 0usize;
    for f in files {
        let file =
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
        let reader = SerializedFileReader::new(file)
            .with_context(|| format!("{} is not a Parquet file", name(f)))?;
        let meta = reader.metadata();
        total_rows += meta.file_metadata().num_rows();
        groups += meta.num_row_groups();
        if files.len() > 1 {
            kaon::outln!(
                "  {}: {} rows in {} row group{}",
                name(f),
                meta.file_metadata().num_rows(),
                meta.num_row_groups(),
                if meta.num_row_groups() == 1 { "" } else { "s" }
            );
        }
    }
    kaon::outln!(
        "parquet: {total_rows} rows, {groups} row group{}{}",
        if groups == 1 { "" } else { "s" },
        if files.len() > 1 {
            format!(" in {} files", files.len())
        } else {
            String::new()
        }
    );
    let Some(first) = files.first() else {
        return Ok(());
    };
    let file = std::fs::File::open(first)?;
    let meta_reader = SerializedFileReader::new(std::fs::File::open(first)?)?;
    for (i, rg) in meta_reader
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .take(10)
    {
        let codec = rg
            .columns()
            .first()
            .map(|c| format!("{:?}", c.compression()))
            .unwrap_or_default();
        kaon::outln!(
            "  row group {i}: {} rows, {} bytes, {codec}",
            rg.num_rows(),
            rg.total_byte_size()
        );
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    kaon::outln!("schema:");
    for field in builder.schema().fields() {
        kaon::outln!(
            "  {}: {}{}",
            field.name(),
            field.data_type(),
            if field.is_nullable() { "" } else { " not null" }
        );
    }
    if rows == 0 {
        return Ok(());
    }
    let reader = builder.with_batch_size(rows).build()?;
    let mut batches = Vec::new();
    let mut got = 0;
    for b in reader {
        let b = b?;
        got += b.num_rows();
        batches.push(b);
        if got >= rows {
            break;
        }
    }
    if let Some(last) = batches.last_mut() {
        let over = got.saturating_sub(rows);
        if over > 0 {
            *last = last.slice(0, last.num_rows() - over);
        }
    }
    kaon::outln!("first {} rows:", got.min(rows));
    kaon::outln!("{}", pretty_format_batches(&batches)?);
    Ok(())
}

/// The first `rows` lines of a text file (or a note that it is binary).
pub fn text(f: &Path, rows: usize) -> Result<()> {
    let file = std::fs::File::open(f)?;
    let mut r = std::io::BufReader::new(file);
    let mut head = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..rows {
        head.clear();
        if r.read_until(b'\n', &mut head)? == 0 {
            break;
        }
        match std::str::from_utf8(&head) {
            Ok(s) => lines.push(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(_) => {
                kaon::outln!("(binary content)");
                return Ok(());
            }
        }
    }
    kaon::outln!("first {} lines of {}:", lines.len(), name(f));
    for l in lines {
        kaon::outln!("  {l}");
    }
    Ok(())
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
