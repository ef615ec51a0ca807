//! The dry-run schedule file (`loader schedule --out FILE`).
//!
//! Columns: `phase` (1 warm-up, 2 measured — vHive's numbering), `function` (index into the trace's functions),
//! `minute` (trace-day minute), `index` (position in that function's minute), `intendedOffsetUs` (from the run
//! start, compressed), `runtimeMs`, `memoryMib`. `\n` line endings, no quoting (all fields are integers), so the
//! same schedule always gives the same bytes.

use std::io::{self, BufWriter, Write};

use super::generate::Invocation;

/// The header line of the schedule CSV (without the line ending).
pub const SCHEDULE_CSV_HEADER: &str = "phase,function,minute,index,intendedOffsetUs,runtimeMs,memoryMib";

/// Writes `invocations` as the schedule CSV to `writer` (buffered internally); returns the rows written.
pub fn write_schedule<I, W>(invocations: I, writer: W) -> io::Result<u64>
where
    I: IntoIterator<Item = Invocation>,
    W: Write,
{
    let mut out = BufWriter::new(writer);
    writeln!(out, "{SCHEDULE_CSV_HEADER}")?;
    let mut rows = 0u64;
    for inv in invocations {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            inv.phase.code(),
            inv.function,
            inv.minute,
            inv.index_in_minute,
            inv.intended_offset_us,
            inv.runtime_ms,
            inv.memory_mib
        )?;
        rows += 1;
    }
    out.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Phase;

    #[test]
    fn writes_header_and_rows() {
        let inv = Invocation {
            function: 3,
            minute: 30,
            index_in_minute: 2,
            intended_offset_us: 1_500_000,
            runtime_ms: 120,
            memory_mib: 256,
            phase: Phase::Warmup,
        };
        let mut buf = Vec::new();
        let rows = write_schedule([inv, Invocation { phase: Phase::Measured, ..inv }], &mut buf).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!("{SCHEDULE_CSV_HEADER}\n1,3,30,2,1500000,120,256\n2,3,30,2,1500000,120,256\n")
        );
    }
}
