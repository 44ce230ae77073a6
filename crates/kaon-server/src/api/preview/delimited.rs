//! CSV and TSV previews: the header as the schema, the first rows as
//! strings.

use serde_json::Value;

use super::Column;

/// What a CSV preview found.
pub(crate) struct Rows {
    pub schema: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    /// Known when `bytes` held the whole file.
    pub total_rows: Option<u64>,
    pub truncated: bool,
}

/// The header and first `max` records of delimited text. `bytes` is the
/// whole file when `whole`, else its first part: that part is cut after
/// its last line break, and the record it ends on is left out when that
/// break is inside a quoted field. `None` when a part holds no whole line.
pub(crate) fn read(bytes: &[u8], whole: bool, delimiter: u8, max: usize) -> Option<Rows> {
    let data = if whole {
        bytes
    } else {
        let end = bytes.iter().rposition(|&b| b == b'\n')?;
        &bytes[..=end]
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    let schema: Vec<Column> = rdr
        .byte_headers()
        .ok()?
        .iter()
        .map(|h| Column {
            name: text(h).trim_start_matches('\u{feff}').to_string(),
            r#type: "string".into(),
        })
        .collect();
    let mut rows = Vec::new();
    let mut more = false;
    let mut count = 0u64;
    let mut records = rdr.byte_records();
    for rec in records.by_ref() {
        // A record the parser cannot read ends the preview there.
        let Ok(rec) = rec else {
            more = true;
            break;
        };
        count += 1;
        if rows.len() < max {
            rows.push(rec.iter().map(|f| Value::String(text(f))).collect());
        } else {
            more = true;
            if !whole {
                break;
            }
        }
    }
    if !whole {
        // The part ended inside a quoted field (an odd number of quotes:
        // `""` inside one counts two): its last record is cut short.
        let open = data.iter().filter(|&&b| b == b'"').count() % 2 == 1;
        if !more && open {
            rows.pop();
        }
        more = true;
    }
    Some(Rows {
        schema,
        rows,
        total_rows: whole.then_some(count),
        truncated: more,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_a_cut_part() {
        let csv = b"a,b\n1,\"x,y\"\n2,z\n3,w\n";
        let r = read(csv, true, b',', 2).unwrap();
        assert_eq!(r.schema.len(), 2);
        assert_eq!(r.schema[1].name, "b");
        assert_eq!(r.rows, [["1", "x,y"], ["2", "z"]]);
        assert_eq!(r.total_rows, Some(3));
        assert!(r.truncated);
        let all = read(csv, true, b',', 10).unwrap();
        assert_eq!(all.rows.len(), 3);
        assert!(!all.truncated);
        // The first 15 bytes: `2,z` has no line break yet.
        let part = read(&csv[..15], false, b',', 10).unwrap();
        assert_eq!(part.rows, [["1", "x,y"]]);
        // Cut inside a quoted field that holds a line break.
        let quoted = b"a,b\n1,x\n2,\"line\nmore\"\n";
        let part = read(&quoted[..17], false, b',', 10).unwrap();
        assert_eq!(part.rows, [["1", "x"]]);
        assert_eq!(part.total_rows, None);
        assert!(part.truncated);
        assert!(read(b"a,b,c", false, b',', 10).is_none());
        let tsv = read(b"k\tv\nx\t1\n", true, b'\t', 10).unwrap();
        assert_eq!(tsv.rows, [["x", "1"]]);
    }
}
