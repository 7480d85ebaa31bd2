//! `kmatrix bisect`: where along an ordered axis one scenario's verdict
//! changes. The axis is kernels (sorted by kernel version) for one component
//! version, or component versions (in the order given) on one kernel. Both
//! ends are judged first, then binary search between them; every point is
//! one cell, run like any other into the bisection's directory (whose
//! selection is the whole axis, so `kmatrix run --resume DIR` can fill the
//! rest in), and a cell already there is reused without a boot.

use crate::cancel::Cancel;
use crate::inputs::Catalog;
use crate::ops::run::{self, RunOptions};
use crate::plan::{Cell, Selection};
use crate::project::Request;
use crate::report::model::kernel_version_key;
use crate::results::ResultsStore;
use crate::Project;
use anyhow::{bail, Result};
use kmatrix_metadata::{BisectResult, Verdict, BISECT_FILE};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How often a point whose boot failed (`infra-error`) is tried again
/// before it is set aside.
const INFRA_RETRIES: u32 = 2;

#[derive(Debug, Clone)]
pub enum Axis {
    /// One version, these kernels (searched oldest to newest).
    Kernels {
        version: String,
        kernels: Vec<String>,
    },
    /// One kernel, these versions (searched in the order given).
    Versions {
        kernel: String,
        versions: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct BisectOptions {
    pub scenario: String,
    pub variant: String,
    pub axis: Axis,
    /// How each point runs: `out`, accelerator, emulator, lock mode. The
    /// request, resume and `only` fields are the bisection's own.
    pub run: RunOptions,
}

/// One point of the axis: its id (kernel or version) and its cell.
struct Point {
    id: String,
    cell: Cell,
}

/// What a point told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// A verdict about the component: pass, fail, crash or timeout.
    Verdict(Verdict),
    /// Nothing either side can be taken from (unavailable, flaky, or an
    /// infrastructure error that did not go away).
    Unusable(Verdict),
}

pub fn bisect(
    project: &Project,
    cache_root: &Path,
    options: &BisectOptions,
    interrupted: Cancel,
) -> Result<BisectResult> {
    let (axis_name, fixed, request) = request_for(options);
    let planned = project.plan(&request)?;
    let points = order_points(&options.axis, planned.cells, &planned.catalog);
    if points.len() < 2 {
        bail!("bisect needs at least two points on its axis (give --kernel or --version at least twice)");
    }
    let mut search = Search {
        project,
        cache_root,
        options,
        request,
        interrupted,
        boots: 0,
        seen: BTreeMap::new(),
    };
    // Points already in the directory count as seen (and show a
    // non-monotonic axis even where the search would not look).
    let store = ResultsStore::open(&options.run.out)?;
    for point in &points {
        if let Some(record) = store
            .records()
            .find(|r| r.cell_id == point.cell.id.as_str())
        {
            if record.verdict != Verdict::InfraError {
                search.seen.insert(point.id.clone(), judge(record.verdict));
            }
        }
    }
    drop(store);

    let last = points.len() - 1;
    let boundary = match (
        search.first_usable(&points, 0, last, 1)?,
        search.first_usable(&points, last, 0, -1)?,
    ) {
        (Some((lo, low)), Some((hi, high))) if lo < hi && low != high => {
            Some(search.narrow(&points, lo, low, hi)?)
        }
        _ => None,
    };
    if search.interrupted.is_cancelled() {
        bail!(
            "interrupted: the cells judged so far are in {}; run the same bisect again to continue",
            options.run.out.display()
        );
    }

    let order: Vec<String> = points.iter().map(|p| p.id.clone()).collect();
    let verdicts: BTreeMap<String, Verdict> = search
        .seen
        .iter()
        .map(|(id, judged)| {
            let verdict = match judged {
                Judged::Verdict(v) | Judged::Unusable(v) => *v,
            };
            (id.clone(), verdict)
        })
        .collect();
    let monotonic = monotonic(&order, &search.seen);
    let summary = sentence(options, &order, &verdicts, boundary.as_ref(), monotonic);
    let result = BisectResult {
        axis: axis_name.into(),
        boundary: boundary.map(|(a, b)| [points[a].id.clone(), points[b].id.clone()]),
        verdicts,
        boots: search.boots,
        order,
        monotonic,
        scenario: options.scenario.clone(),
        variant: options.variant.clone(),
        fixed,
        summary,
    };
    crate::files::write_atomically(
        &options.run.out.join(BISECT_FILE),
        (serde_json::to_string_pretty(&result)? + "\n").as_bytes(),
    )?;
    Ok(result)
}

/// The run request covering the whole axis.
fn request_for(options: &BisectOptions) -> (&'static str, String, Request) {
    let (axis, fixed, kernels, versions) = match &options.axis {
        Axis::Kernels { version, kernels } => (
            "kernel",
            version.clone(),
            kernels.clone(),
            vec![version.clone()],
        ),
        Axis::Versions { kernel, versions } => (
            "version",
            kernel.clone(),
            vec![kernel.clone()],
            versions.clone(),
        ),
    };
    let request = Request {
        scenarios: vec![options.scenario.clone()],
        kernels,
        selection: Selection {
            variants: vec![options.variant.clone()],
            versions,
            ..Default::default()
        },
        added_versions: Vec::new(),
        kubernetes: None,
    };
    (axis, fixed, request)
}

/// The axis's cells in search order: kernels by kernel version (the
/// catalog's exact build where it names one), versions as given.
fn order_points(axis: &Axis, cells: Vec<Cell>, catalog: &Catalog) -> Vec<Point> {
    let mut points: Vec<Point> = match axis {
        Axis::Kernels { kernels, .. } => kernels
            .iter()
            .filter_map(|k| {
                let cell = cells.iter().find(|c| c.kernel.as_str() == k)?.clone();
                Some(Point {
                    id: k.clone(),
                    cell,
                })
            })
            .collect(),
        Axis::Versions { versions, .. } => versions
            .iter()
            .filter_map(|v| {
                let cell = cells.iter().find(|c| &c.version == v)?.clone();
                Some(Point {
                    id: v.clone(),
                    cell,
                })
            })
            .collect(),
    };
    let mut unique = BTreeSet::new();
    points.retain(|p| unique.insert(p.id.clone()));
    if let Axis::Kernels { .. } = axis {
        points.sort_by_cached_key(|p| {
            let release = catalog
                .kernels
                .get(p.id.as_str())
                .map(|e| e.release_hint())
                .unwrap_or_default();
            (kernel_version_key(&release), p.id.clone())
        });
    }
    points
}

fn judge(verdict: Verdict) -> Judged {
    match verdict {
        Verdict::Pass | Verdict::Fail | Verdict::Crash | Verdict::Timeout => {
            Judged::Verdict(verdict)
        }
        other => Judged::Unusable(other),
    }
}

struct Search<'a> {
    project: &'a Project,
    cache_root: &'a Path,
    options: &'a BisectOptions,
    request: Request,
    interrupted: Cancel,
    boots: u32,
    seen: BTreeMap<String, Judged>,
}

impl Search<'_> {
    /// Judges one point: reused when the directory holds it, else run as a
    /// cell of the axis; an infrastructure error is tried again.
    fn judge(&mut self, point: &Point) -> Result<Judged> {
        if let Some(judged) = self.seen.get(&point.id) {
            return Ok(*judged);
        }
        let mut judged = Judged::Unusable(Verdict::InfraError);
        for _ in 0..=INFRA_RETRIES {
            if self.interrupted.is_cancelled() {
                return Ok(judged);
            }
            let options = RunOptions {
                request: self.request.clone(),
                resume: true,
                only: Some(BTreeSet::from([point.cell.id.to_string()])),
                shell: false,
                retries: Some(0),
                ..self.options.run.clone()
            };
            let summary = run::run(
                self.project,
                self.cache_root,
                &options,
                self.interrupted.clone(),
            )?;
            // Cell ids are fixed after provisioning (lock pins): find the
            // point's cell by what it is, not by the id planned before.
            let Some(record) = summary.records.iter().find(|r| {
                r.scenario == point.cell.scenario
                    && r.version == point.cell.version
                    && r.variant == point.cell.variant
                    && r.kernel == point.cell.kernel.as_str()
            }) else {
                continue;
            };
            self.boots += record.attempts;
            judged = judge(record.verdict);
            if record.verdict != Verdict::InfraError {
                break;
            }
        }
        self.seen.insert(point.id.clone(), judged);
        Ok(judged)
    }

    /// The first point from `from` towards `to` (step ±1) that gives a
    /// verdict, and that verdict.
    fn first_usable(
        &mut self,
        points: &[Point],
        from: usize,
        to: usize,
        step: isize,
    ) -> Result<Option<(usize, Verdict)>> {
        let mut at = from as isize;
        loop {
            if let Judged::Verdict(v) = self.judge(&points[at as usize])? {
                return Ok(Some((at as usize, v)));
            }
            if at == to as isize || self.interrupted.is_cancelled() {
                return Ok(None);
            }
            at += step;
        }
    }

    /// Binary search between `lo` (verdict `low`) and `hi` (another verdict)
    /// for the first point that differs from `low`. Points with no verdict
    /// are stepped over; where only such points lie between a judged pair,
    /// that pair is the boundary (the points between are in `verdicts`).
    fn narrow(
        &mut self,
        points: &[Point],
        mut lo: usize,
        low: Verdict,
        mut hi: usize,
    ) -> Result<(usize, usize)> {
        while hi - lo > 1 && !self.interrupted.is_cancelled() {
            let mid = lo + (hi - lo) / 2;
            let found = match self.first_usable(points, mid, hi - 1, 1)? {
                Some(found) => Some(found),
                // Nothing judged from mid up to hi: look below mid instead.
                None if mid > lo + 1 => self.first_usable(points, mid - 1, lo + 1, -1)?,
                None => None,
            };
            match found {
                Some((at, v)) if v == low => {
                    if at < mid && (at + 1..hi).all(|i| self.unusable(&points[i])) {
                        return Ok((at, hi));
                    }
                    lo = at;
                }
                Some((at, _)) => hi = at,
                None => break,
            }
        }
        Ok((lo, hi))
    }

    fn unusable(&self, point: &Point) -> bool {
        matches!(self.seen.get(&point.id), Some(Judged::Unusable(_)))
    }
}

/// Whether the judged points fit one change along the axis: once the
/// verdict leaves the first one it never comes back.
fn monotonic(order: &[String], seen: &BTreeMap<String, Judged>) -> bool {
    let verdicts: Vec<Verdict> = order
        .iter()
        .filter_map(|id| match seen.get(id) {
            Some(Judged::Verdict(v)) => Some(*v),
            _ => None,
        })
        .collect();
    let changes = verdicts.windows(2).filter(|w| w[0] != w[1]).count();
    changes <= 1
}

fn sentence(
    options: &BisectOptions,
    order: &[String],
    verdicts: &BTreeMap<String, Verdict>,
    boundary: Option<&(usize, usize)>,
    monotonic: bool,
) -> String {
    let what = match &options.axis {
        Axis::Kernels { version, .. } => format!(
            "{} {version} {} over {} kernels",
            options.scenario,
            options.variant,
            order.len()
        ),
        Axis::Versions { kernel, .. } => format!(
            "{} {} on {kernel} over {} versions",
            options.scenario,
            options.variant,
            order.len()
        ),
    };
    let seen = order
        .iter()
        .filter_map(|id| verdicts.get(id).map(|v| format!("{id} {v}")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = match boundary {
        Some((a, b)) => {
            let (before, after) = (&order[*a], &order[*b]);
            let change = match (verdicts.get(before), verdicts.get(after)) {
                (Some(Verdict::Pass), Some(_)) => "breaks",
                (Some(_), Some(Verdict::Pass)) => "is fixed",
                _ => "changes",
            };
            format!(
                "{what}: {change} between {before} ({}) and {after} ({})",
                verdicts.get(before).map_or("?".into(), |v| v.to_string()),
                verdicts.get(after).map_or("?".into(), |v| v.to_string()),
            )
        }
        None => {
            let ends: Vec<String> = [order.first(), order.last()]
                .into_iter()
                .flatten()
                .map(|id| {
                    format!(
                        "{id} {}",
                        verdicts
                            .get(id)
                            .map_or("not judged".into(), |v| v.to_string())
                    )
                })
                .collect();
            format!(
                "{what}: no boundary found, the ends agree or could not be judged ({})",
                ends.join(", ")
            )
        }
    };
    if !monotonic {
        text.push_str(&format!(
            "; the verdicts are not monotonic along the axis ({}), points seen: {seen}",
            changes(order, verdicts).join(", ")
        ));
    }
    text
}

/// Each adjacent pair of judged points whose verdicts differ, in axis order
/// (`a → b (pass → fail)`).
fn changes(order: &[String], verdicts: &BTreeMap<String, Verdict>) -> Vec<String> {
    let judged: Vec<(&String, Verdict)> = order
        .iter()
        .filter_map(|id| Some((id, *verdicts.get(id)?)))
        .filter(|(_, v)| matches!(judge(*v), Judged::Verdict(_)))
        .collect();
    judged
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| format!("{} → {} ({} → {})", w[0].0, w[1].0, w[0].1, w[1].1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pairs: &[(&str, Verdict)]) -> BTreeMap<String, Judged> {
        pairs
            .iter()
            .map(|(id, v)| (id.to_string(), judge(*v)))
            .collect()
    }

    #[test]
    fn changes_name_each_adjacent_pair_that_differs() {
        let order: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let verdicts = BTreeMap::from([
            ("a".to_string(), Verdict::Pass),
            ("b".to_string(), Verdict::Fail),
            ("c".to_string(), Verdict::Unavailable),
            ("d".to_string(), Verdict::Pass),
        ]);
        assert_eq!(
            changes(&order, &verdicts),
            ["a → b (pass → fail)", "b → d (fail → pass)"]
        );
    }

    #[test]
    fn one_change_is_monotonic_two_are_not() {
        let order: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert!(monotonic(
            &order,
            &seen(&[
                ("a", Verdict::Pass),
                ("c", Verdict::Fail),
                ("d", Verdict::Fail)
            ])
        ));
        assert!(!monotonic(
            &order,
            &seen(&[
                ("a", Verdict::Pass),
                ("b", Verdict::Fail),
                ("d", Verdict::Pass)
            ])
        ));
        // Points without a verdict about the component do not count.
        assert!(monotonic(
            &order,
            &seen(&[
                ("a", Verdict::Pass),
                ("b", Verdict::Unavailable),
                ("c", Verdict::Pass),
                ("d", Verdict::Crash)
            ])
        ));
    }
}
