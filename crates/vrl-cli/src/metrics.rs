//! `vrl metrics`: score representations saved by other tools.
//!
//! `vrl metrics disentanglement --codes C.npy --factors F.npy` reads codes `[N, D]` (float32 or
//! float64) and discrete factors `[N, K]` (any integer dtype) from `.npy` files and prints one JSON
//! object: `mig`, `sap` and `modularity` as numbers, `dci` as `{disentanglement, completeness,
//! informativeness, …}`, the settings used (`settings`) and the full results behind each number
//! (`details`, with the settings each metric recorded).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ndarray::{Array2, ArrayView2};
use serde_json::{Value, json};
use vrl_data::npy::{NpyArray, NpyError, decode_npy};
use vrl_disentangle::{
    CodeKind, DciSettings, Discretization, GbtSettings, Importance, MigSettings, ModularitySettings,
    SapSettings, Strategy,
};

use crate::UserError;

/// `vrl metrics …`.
#[derive(clap::Subcommand, Debug)]
pub enum MetricsCommand {
    /// MIG, SAP, DCI and modularity of codes against ground-truth factors, as disentanglement_lib
    /// computes them (see docs/disentanglement.md); prints one JSON object.
    Disentanglement(DisentanglementArgs),
}

/// Arguments of `vrl metrics disentanglement`.
#[derive(clap::Args, Debug)]
pub struct DisentanglementArgs {
    /// Codes `[N, D]`, one row per point (.npy, float32 or float64), e.g. a VAE's posterior means.
    #[arg(long)]
    codes: PathBuf,
    /// Ground-truth factors `[N, K]` of the same points (.npy, any integer dtype; each column is a
    /// discrete factor, any values).
    #[arg(long)]
    factors: PathBuf,
    /// The metrics, comma-separated: mig, sap, dci, modularity.
    #[arg(long, value_delimiter = ',', default_value = "mig,sap,dci,modularity")]
    metrics: Vec<String>,
    /// Write the JSON here (atomically) as well as to standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// MIG and modularity: bins per code dimension, from 2 to 100000 (each code dimension's bins
    /// take memory whether or not any point falls in them).
    #[arg(long, default_value_t = 20)]
    bins: usize,
    /// MIG and modularity: where the bin edges go (histogram: equal width, as disentanglement_lib;
    /// quantile: equal frequency).
    #[arg(long, value_enum, default_value_t = BinStrategy::Histogram)]
    bin_strategy: BinStrategy,
    /// SAP and DCI: the leading fraction of the points used for training, the rest for testing.
    #[arg(long, default_value_t = 2.0 / 3.0)]
    train_fraction: f64,
    /// DCI: the gradient-boosted trees' `random_state` (it decides between equally good splits).
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// What the codes are, recorded with the results: mean (posterior means), sample, other.
    #[arg(long, value_enum, default_value_t = CodesAre::Mean)]
    codes_are: CodesAre,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BinStrategy {
    Histogram,
    Quantile,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CodesAre {
    Mean,
    Sample,
    Other,
}

/// The metrics `vrl metrics disentanglement` computes, in output order.
const METRICS: [&str; 4] = ["mig", "sap", "dci", "modularity"];

/// The allowed range of `--bins`.
const BINS: std::ops::RangeInclusive<usize> = 2..=100_000;

pub fn run(command: MetricsCommand) -> anyhow::Result<ExitCode> {
    match command {
        MetricsCommand::Disentanglement(args) => disentanglement(&args),
    }
}

fn disentanglement(args: &DisentanglementArgs) -> anyhow::Result<ExitCode> {
    let wanted = metric_names(&args.metrics)?;
    if let Some(path) = &args.output {
        crate::output::check_output(path, "a JSON file")?;
    }
    if !BINS.contains(&args.bins) {
        return Err(UserError(format!(
            "--bins {}: expected from {} to {} bins per code dimension",
            args.bins,
            BINS.start(),
            BINS.end()
        ))
        .into());
    }
    let codes = read_codes(&args.codes)?;
    let factors = read_factors(&args.factors)?;
    check_inputs(codes.view(), &args.codes, factors.view(), &args.factors)?;
    let kind = match args.codes_are {
        CodesAre::Mean => CodeKind::Mean,
        CodesAre::Sample => CodeKind::Sample,
        CodesAre::Other => CodeKind::Other,
    };
    let discretization = Discretization {
        num_bins: args.bins,
        strategy: match args.bin_strategy {
            BinStrategy::Histogram => Strategy::Histogram,
            BinStrategy::Quantile => Strategy::Quantile,
        },
    };
    let gbt = GbtSettings { random_state: args.seed, ..GbtSettings::default() };
    let (c, f) = (codes.view(), factors.view());
    let mut out = serde_json::Map::new();
    let mut details = serde_json::Map::new();
    let mut seconds = serde_json::Map::new();
    for name in &wanted {
        let start = Instant::now();
        let detail = match *name {
            "mig" => {
                let settings = MigSettings { discretization, factors: None, codes: kind };
                let m = vrl_disentangle::mig(c, f, &settings).map_err(input_error("MIG", args))?;
                out.insert("mig".into(), json!(m.score));
                serde_json::to_value(m)?
            }
            "sap" => {
                let settings =
                    SapSettings { train_fraction: args.train_fraction, codes: kind, ..Default::default() };
                let s = vrl_disentangle::sap(c, f, &settings).map_err(input_error("SAP", args))?;
                out.insert("sap".into(), json!(s.score));
                serde_json::to_value(s)?
            }
            "dci" => {
                let settings = DciSettings {
                    importance: Importance::GradientBoosting(gbt),
                    train_fraction: args.train_fraction,
                    factors: None,
                    codes: kind,
                };
                let d = vrl_disentangle::dci(c, f, &settings).map_err(input_error("DCI", args))?;
                out.insert(
                    "dci".into(),
                    json!({
                        "disentanglement": d.disentanglement,
                        "completeness": d.completeness,
                        "informativeness": d.informativeness_test,
                        "informativeness_train": d.informativeness_train,
                        "informativeness_test": d.informativeness_test,
                    }),
                );
                serde_json::to_value(d)?
            }
            _ => {
                let settings = ModularitySettings { discretization, factors: None, codes: kind };
                let m =
                    vrl_disentangle::modularity(c, f, &settings).map_err(input_error("modularity", args))?;
                out.insert("modularity".into(), json!(m.score));
                serde_json::to_value(m)?
            }
        };
        seconds.insert((*name).into(), json!(start.elapsed().as_secs_f64()));
        details.insert((*name).into(), detail);
    }
    out.insert(
        "settings".into(),
        json!({
            "codes": args.codes.display().to_string(),
            "factors": args.factors.display().to_string(),
            "num_points": codes.nrows(),
            "num_codes": codes.ncols(),
            "num_factors": factors.ncols(),
            "metrics": wanted,
            "codes_are": kind,
            "bins": args.bins,
            "bin_strategy": discretization.strategy,
            "train_fraction": args.train_fraction,
            "sap": SapSettings::default().mode,
            "dci_importance": Importance::GradientBoosting(gbt),
            "seed": args.seed,
        }),
    );
    out.insert("seconds".into(), Value::Object(seconds));
    out.insert("details".into(), Value::Object(details));
    let text = serde_json::to_string_pretty(&Value::Object(out))?;
    if let Some(path) = &args.output {
        vrl_cache::write_atomic(path, format!("{text}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    writeln!(std::io::stdout().lock(), "{text}").context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// The metric names of `--metrics`, checked, without repeats, in the order given.
fn metric_names(given: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for name in given {
        let name = name.trim();
        let Some(&known) = METRICS.iter().find(|m| m.eq_ignore_ascii_case(name)) else {
            return Err(UserError(format!(
                "--metrics: unknown metric `{name}`; expected a comma-separated list of {}",
                METRICS.join(", ")
            ))
            .into());
        };
        if !out.contains(&known) {
            out.push(known);
        }
    }
    if out.is_empty() {
        return Err(UserError(format!("--metrics is empty; expected some of {}", METRICS.join(", "))).into());
    }
    Ok(out)
}

/// Turns a metric's complaint about the arrays into a user error naming both files.
fn input_error<'a>(
    metric: &'static str,
    args: &'a DisentanglementArgs,
) -> impl FnOnce(vrl_disentangle::MetricError) -> anyhow::Error + 'a {
    move |e| {
        UserError(format!(
            "{metric} of codes {} against factors {}: {e}",
            args.codes.display(),
            args.factors.display()
        ))
        .into()
    }
}

/// The 2-D array of the `.npy` file `path`, read with vrl's bounds-checked reader, or an error naming
/// the file and what was expected.
fn read_2d(path: &Path, what: &str, expected: &str) -> anyhow::Result<NpyArray> {
    let bytes = std::fs::read(path)
        .map_err(|e| UserError(format!("cannot read the {what} file {}: {e}", path.display())))?;
    let array = decode_npy(&bytes).map_err(|e| npy_error(path, what, expected, &e))?;
    if array.shape.len() != 2 {
        let why = format!("it is a {}-D array; expected {expected} (a 2-D array)", array.shape.len());
        return Err(UserError(format!("{what} file {}: {why}", path.display())).into());
    }
    Ok(array)
}

/// Why `path` is not an array of the expected dtypes.
fn npy_error(path: &Path, what: &str, expected: &str, e: &NpyError) -> anyhow::Error {
    let why = match e {
        NpyError::Dtype(descr) => format!("its dtype '{descr}' is not supported; expected {expected}"),
        NpyError::WrongDtype { found, .. } => format!("its dtype is '{found}'; expected {expected}"),
        other => other.to_string(),
    };
    UserError(format!("{what} file {}: {why}", path.display())).into()
}

/// `data` as the 2-D array of `shape` (the reader checked that their sizes agree).
fn array2<T>(shape: &[usize], data: Vec<T>) -> anyhow::Result<Array2<T>> {
    Array2::from_shape_vec((shape[0], shape[1]), data).context("a .npy array does not fit its shape")
}

/// Codes `[N, D]` from a float32 or float64 `.npy` file, as `f64`.
pub(crate) fn read_codes(path: &Path) -> anyhow::Result<Array2<f64>> {
    let expected = "codes [N, D] of float32 or float64";
    let array = read_2d(path, "codes", expected)?;
    let data = array.to_f64().map_err(|e| npy_error(path, "codes", expected, &e))?;
    array2(&array.shape, data)
}

/// Factors `[N, K]` from an integer `.npy` file, as `i64`.
pub(crate) fn read_factors(path: &Path) -> anyhow::Result<Array2<i64>> {
    let expected = "factors [N, K] of an integer dtype (int8 to int64, uint8 to uint64)";
    let array = read_2d(path, "factors", expected)?;
    let data = array.to_i64().map_err(|e| match e {
        NpyError::OutOfRange { index, value, .. } => UserError(format!(
            "factors file {}: value {value} at row {}, column {} does not fit in int64; expected factor values \
             below 2^63",
            path.display(),
            index / array.shape[1],
            index % array.shape[1]
        ))
        .into(),
        e => npy_error(path, "factors", expected, &e),
    })?;
    array2(&array.shape, data)
}

/// Shapes, row counts and finiteness, with the files named.
fn check_inputs(
    codes: ArrayView2<'_, f64>,
    codes_path: &Path,
    factors: ArrayView2<'_, i64>,
    factors_path: &Path,
) -> anyhow::Result<()> {
    let (n, d) = codes.dim();
    let (m, k) = factors.dim();
    if n == 0 || d == 0 {
        return Err(UserError(format!(
            "codes file {}: shape [{n}, {d}]; expected codes [N, D] with at least one point and one dimension",
            codes_path.display()
        ))
        .into());
    }
    if m == 0 || k == 0 {
        return Err(UserError(format!(
            "factors file {}: shape [{m}, {k}]; expected factors [N, K] with at least one point and one factor",
            factors_path.display()
        ))
        .into());
    }
    if n != m {
        return Err(UserError(format!(
            "codes file {} has {n} rows but factors file {} has {m}; expected one row of factors per row of codes",
            codes_path.display(),
            factors_path.display()
        ))
        .into());
    }
    if let Some(((i, j), v)) = codes.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(UserError(format!(
            "codes file {}: value {v} at row {i}, column {j}; expected finite codes",
            codes_path.display()
        ))
        .into());
    }
    Ok(())
}
