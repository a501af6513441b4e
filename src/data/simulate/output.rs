//! The outputs: the schema of simulated impressions, the Parquet batches of
//! a split, and the Criteo-shaped TSV for scale tests.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int8Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::stream::{sigmoid, Impression, Stream};
use super::world::{World, AGES, DEVICES, GENDERS, OSES, PLACEMENTS};
use super::BATCH_ROWS;
use crate::data::interrupt;
use crate::data::parse::hour_weekday;
use crate::data::schema::{Column, ColumnKind, DatasetSchema};
use crate::data::sketch::{hash_bytes, hash_i64, ColumnSketch};
use crate::error::{Error, Result};
use crate::metrics::ProbSummary;
use crate::progress::Progress;
use crate::rng::{AliasTable, Rng};

/// The categorical columns of simulated impressions, in schema order.
pub const SIM_CATEGORICAL: [&str; 12] = [
    "user_id",
    "user_age",
    "user_gender",
    "ad_id",
    "advertiser_id",
    "campaign_id",
    "ad_category",
    "device",
    "os",
    "placement",
    "site_id",
    "site_category",
];

/// The dataset schema of simulated impressions.
pub fn sim_schema() -> DatasetSchema {
    let cat = |n: &str| Column {
        name: n.into(),
        kind: ColumnKind::Categorical,
        format: None,
    };
    let mut columns: Vec<Column> = SIM_CATEGORICAL.iter().map(|n| cat(n)).collect();
    columns.push(Column {
        name: "time".into(),
        kind: ColumnKind::Timestamp,
        format: Some(crate::data::schema::TimeFormat::Rfc3339),
    });
    columns.push(Column {
        name: "clicked".into(),
        kind: ColumnKind::Label,
        format: None,
    });
    columns.push(Column {
        name: "p_click".into(),
        kind: ColumnKind::Truth,
        format: None,
    });
    DatasetSchema {
        name: "synthetic".into(),
        delimiter: b',',
        header: true,
        ragged: false,
        columns,
    }
}

/// Column builders of one split's pending batch.
#[derive(Default)]
pub(super) struct SimBatch {
    pub(super) rows: usize,
    pub(super) strings: Vec<StringBuilder>,
    pub(super) time: Option<TimestampMillisecondBuilder>,
    pub(super) clicked: Int8Builder,
    pub(super) p: Float64Builder,
}

impl SimBatch {
    pub(super) fn push(
        &mut self,
        w: &World,
        imp: &Impression,
        p: f64,
        y: bool,
        text: &mut String,
        sk: &mut [ColumnSketch],
    ) {
        if self.strings.is_empty() {
            self.strings = (0..SIM_CATEGORICAL.len())
                .map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8))
                .collect();
        }
        let ad = imp.ad as usize;
        let campaign = w.ad_campaign[ad];
        let advertiser = w.campaign_advertiser[campaign as usize];
        let site = imp.site as usize;
        let mut put = |col: usize, args: std::fmt::Arguments| {
            text.clear();
            let _ = text.write_fmt(args);
            self.strings[col].append_value(&*text);
            sk[col].distinct.insert(hash_bytes(text.as_bytes()));
        };
        let user = imp.user as usize;
        put(0, format_args!("u{user}"));
        put(1, format_args!("{}", AGES[w.user_age[user] as usize]));
        put(2, format_args!("{}", GENDERS[w.user_gender[user] as usize]));
        put(3, format_args!("a{ad}"));
        put(4, format_args!("adv{advertiser}"));
        put(5, format_args!("c{campaign}"));
        put(6, format_args!("cat{}", w.ad_category[ad]));
        put(7, format_args!("{}", DEVICES[imp.device as usize]));
        put(
            8,
            format_args!("{}", OSES[imp.device as usize][imp.os as usize].0),
        );
        put(9, format_args!("{}", PLACEMENTS[imp.placement as usize]));
        put(10, format_args!("s{site}"));
        put(11, format_args!("scat{}", w.site_category[site]));
        self.time
            .get_or_insert_with(|| {
                TimestampMillisecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC")
            })
            .append_value(imp.time * 1000);
        let n = SIM_CATEGORICAL.len();
        sk[n].distinct.insert(hash_i64(imp.time));
        self.clicked.append_value(y as i8);
        sk[n + 1].distinct.insert(hash_i64(y as i64));
        self.p.append_value(p);
        sk[n + 2].distinct.insert(hash_i64(p.to_bits() as i64));
        self.rows += 1;
    }

    pub(super) fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let time = self
            .time
            .as_mut()
            .map(|t| t.finish())
            .ok_or_else(|| Error::Invalid("empty simulator batch".into()))?;
        arrays.push(Arc::new(time));
        arrays.push(Arc::new(self.clicked.finish()));
        arrays.push(Arc::new(self.p.finish()));
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::arrow("<simulator>", e))
    }
}

/// Criteo-shaped lines: I1 hour, I2 weekday, I3 day, I4..I13 noise counts
/// (30% missing), C1..C12 hex hashes of the twelve simulated categorical
/// columns, C13..C26 noise categories of growing cardinality (10% missing).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_criteo_tsv(
    w: &World,
    stream: &mut Stream,
    clicks: &mut Rng,
    alpha: f64,
    path: &Path,
    bar: &Progress,
    overall: &mut ProbSummary,
    seed: u64,
) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut noise = Rng::derive(seed, "criteo-noise");
    let noise_tables: Vec<AliasTable> = (0..26 - SIM_CATEGORICAL.len())
        .map(|i| AliasTable::zipf(10usize << (i % 14), 1.1))
        .collect();
    let count_table = AliasTable::zipf(1000, 1.2);
    let start_day = w.cfg.start_unix().div_euclid(86_400);
    let mut line = String::with_capacity(512);
    let mut row = 0u64;
    while let Some(imp) = stream.next() {
        let p = sigmoid(alpha + imp.z);
        let y = clicks.uniform() < p;
        overall.add(p, y);
        line.clear();
        let (hod, wd) = hour_weekday(imp.time);
        let _ = write!(
            line,
            "{}\t{hod}\t{wd}\t{}",
            y as u8,
            imp.time.div_euclid(86_400) - start_day
        );
        for _ in 0..10 {
            if noise.bernoulli(0.3) {
                line.push('\t');
            } else {
                let _ = write!(line, "\t{}", count_table.sample(&mut noise));
            }
        }
        let ad = imp.ad as usize;
        let campaign = w.ad_campaign[ad];
        let user = imp.user as usize;
        let cats = [
            imp.user as u64,
            w.user_age[user] as u64,
            w.user_gender[user] as u64,
            imp.ad as u64,
            w.campaign_advertiser[campaign as usize] as u64,
            campaign as u64,
            w.ad_category[ad] as u64,
            imp.device as u64,
            imp.os as u64,
            imp.placement as u64,
            imp.site as u64,
            w.site_category[imp.site as usize] as u64,
        ];
        for (i, v) in cats.iter().enumerate() {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), i as u64) as u32;
            let _ = write!(line, "\t{h:08x}");
        }
        for (i, t) in noise_tables.iter().enumerate() {
            if noise.bernoulli(0.1) {
                line.push('\t');
            } else {
                let v = t.sample(&mut noise) as u64;
                let h =
                    xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), 100 + i as u64) as u32;
                let _ = write!(line, "\t{h:08x}");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        row += 1;
        if row % 65_536 == 0 {
            bar.set(row, row);
            interrupt::check()?;
        }
    }
    interrupt::check()?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(())
}
