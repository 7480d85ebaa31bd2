//! `matrix.csv`: per scenario a header `scenario,version,variant,fidelity,<kernel>…`,
//! then one line per version × variant; a cell is `verdict` or
//! `verdict: signature`.

use anyhow::Result;
use kmatrix_metadata::Matrix;

/// One line per row, one column per kernel: `scenario,version,variant,fidelity,<kernel>...`
/// (`fidelity`: `release`, `upstream-code`, `stand-in`, or empty when unknown).
pub fn render(matrix: &Matrix) -> Result<String> {
    // Each scenario has its own kernel columns, so rows differ in length.
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    for scenario in &matrix.scenarios {
        let mut header = vec![
            "scenario".to_string(),
            "version".into(),
            "variant".into(),
            "fidelity".into(),
        ];
        header.extend(scenario.kernels.iter().map(|k| k.id.clone()));
        writer.write_record(&header)?;
        for row in &scenario.rows {
            let mut line = vec![
                scenario.scenario.clone(),
                row.version.clone(),
                row.variant.clone(),
                row.fidelity
                    .map(|f| f.name().to_string())
                    .unwrap_or_default(),
            ];
            line.extend(scenario.kernels.iter().map(|k| {
                row.cells
                    .get(&k.id)
                    .map(|cell| cell.text())
                    .unwrap_or_default()
            }));
            writer.write_record(&line)?;
        }
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}
