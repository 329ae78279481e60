//! Read+map throughput on a generated 1,000,000-row contacts CSV, next to a plain `csv::ByteRecord` read of
//! the same file in the same run (the ceiling: no UTF-8 check, no mapping, one reused record).
//!
//! The file is generated on first use into `target/bench-data/` (not committed). `scripts/bench-read-map.sh`
//! runs this bench and measures peak RSS of `savio-sync validate` on the same file; figures go to
//! BENCHMARKS.md.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use savio_sync::mapping::Mapping;
use savio_sync::pipeline::{Pipeline, RowKind};
use savio_sync::source::{InputPath, InputSpec, TextEncoding};

/// The allocator the `savio-sync` binary uses, so that the bench measures what the binary runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: u64 = 1_000_000;

/// The mapping the benchmark applies: a HubSpot-like contacts export with a derived company, a template,
/// an email, a lowercase stage, and typed attributes (integer, date).
pub const MAPPING: &str = r#"
[company]
internal_id = "Associated Company ID"
name = "Associated Company"

[contact]
internal_id = "Record ID"
name = "{First Name} {Last Name}"
email = "Email"

[contact.filterable_attributes]
lifecycle_stage = { column = "Lifecycle Stage", case = "lower" }
score = { column = "HubSpot Score", type = "integer" }
created = { column = "Create Date", type = "date" }
city = "City"
country = "Country/Region"
"#;

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-data")
}

/// Writes the input once (deterministic content) and the mapping next to it.
fn ensure_input() -> (PathBuf, PathBuf) {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).expect("create bench-data dir");
    let csv = dir.join("contacts-1m.csv");
    let mapping = dir.join("contacts-1m.toml");
    std::fs::write(&mapping, MAPPING).expect("write mapping");
    if !csv.exists() {
        let tmp = dir.join("contacts-1m.csv.tmp");
        generate(&tmp).expect("generate input");
        std::fs::rename(&tmp, &csv).expect("rename input");
    }
    (csv, mapping)
}

fn generate(path: &Path) -> std::io::Result<()> {
    let first = ["Ada", "Grace", "Zoë", "José", "Ming", "Olu", "Anna-Lena", "Siobhán", "Kai", "Yuki"];
    let last = ["Lovelace", "Hopper", "Müller", "García", "Wang", "Adeyemi", "Schmidt", "O'Brien", "Kim", "Tanaka"];
    let stages = ["Lead", "Subscriber", "Customer", "Opportunity", "Evangelist"];
    let cities = ["Berlin", "São Paulo", "New York", "Lagos", "Tokyo", "\"Paris, 11e\""];
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    writeln!(
        w,
        "Record ID,First Name,Last Name,Email,Phone Number,Associated Company ID,Associated Company,Lifecycle Stage,HubSpot Score,Create Date,City,Country/Region"
    )?;
    for i in 0..ROWS {
        let f = first[(i % 10) as usize];
        let l = last[(i / 10 % 10) as usize];
        let company = i % 20_000;
        writeln!(
            w,
            "{id},{f},{l}, {fl}.{ll}{i}@Example.com ,+1 555 {p:07},C{company},Company {company} Inc,{stage},{score},2024-{m:02}-{d:02} {h:02}:{min:02},{city},DE",
            id = 100_000 + i,
            fl = f.to_lowercase(),
            ll = l.to_lowercase().replace('\'', ""),
            p = i % 10_000_000,
            stage = stages[(i % 5) as usize],
            score = i % 1000,
            m = i % 12 + 1,
            d = i % 28 + 1,
            h = i % 24,
            min = i % 60,
            city = cities[(i % 6) as usize],
        )?;
    }
    w.flush()
}

fn plain_read(path: &Path) -> u64 {
    let mut reader = csv::ReaderBuilder::new().from_path(path).expect("open");
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while reader.read_byte_record(&mut record).expect("read") {
        rows += 1;
        black_box(&record);
    }
    rows
}

fn read_map(path: &Path, mapping: &Mapping) -> u64 {
    let spec = InputSpec {
        path: InputPath::File(path.to_path_buf()),
        format: None,
        delimiter: None,
        encoding: TextEncoding::UTF8,
    };
    let mut pipeline = Pipeline::open(&spec, mapping).expect("open pipeline");
    let mut payloads = 0;
    while let Some(row) = pipeline.next_row().expect("read") {
        match row.kind {
            RowKind::Mapped { payloads: p, .. } => payloads += p.len() as u64,
            other => panic!("line {}: unexpected {other:?}", row.line),
        }
    }
    payloads
}

fn bench(c: &mut Criterion) {
    let (csv, mapping_path) = ensure_input();
    let mapping = Mapping::load(&mapping_path).expect("mapping");
    let bytes = std::fs::metadata(&csv).expect("stat").len();
    assert_eq!(plain_read(&csv), ROWS);
    assert_eq!(read_map(&csv, &mapping), ROWS + 20_000, "every row maps to a contact; 20,000 companies");

    let mut g = c.benchmark_group("contacts_1m");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).throughput(Throughput::Bytes(bytes));
    g.bench_function("plain_byte_record_read", |b| b.iter(|| black_box(plain_read(&csv))));
    g.bench_function("read_map", |b| b.iter(|| black_box(read_map(&csv, &mapping))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
