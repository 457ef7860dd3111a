//! The growth plot of the firm-scale benchmarks: reads the figures `benches/firm.rs`
//! appended to `target/perf/firm.jsonl` (or `SYNCHUB_BENCH_OUT`), takes the latest run of
//! each size, prints the growth tables and draws `docs/perf-growth.png` (or
//! `SYNCHUB_PLOT_PNG`): time against users at 1,000 contacts per side, and against
//! contacts per side at 100 users, log–log. Text needs a TrueType font: DejaVu Sans, or
//! the file `SYNCHUB_PLOT_FONT` names.
//! Run: `cargo bench --bench plot` (after `benches/growth.sh`).

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FIGURES: [(&str, &str, RGBColor); 4] = [
    ("initial_s", "initial sync", RGBColor(200, 40, 40)),
    ("incremental_s", "incremental cycle (1 %)", RGBColor(40, 100, 200)),
    ("quiet_s", "quiet cycle", RGBColor(40, 160, 60)),
    ("calendar_send_s", "calendar cycle (sending)", RGBColor(150, 90, 200)),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of benchmarks
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let input = std::env::var("SYNCHUB_BENCH_OUT").unwrap_or_else(|_| format!("{root}/target/perf/firm.jsonl"));
    let text = std::fs::read_to_string(&input).unwrap_or_else(|e| panic!("{input}: {e}; run benches/growth.sh first"));
    // The latest run of each (users, contacts).
    let mut runs: BTreeMap<(u64, u64), serde_json::Value> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{input}: {e}: {line}"));
        let (Some(u), Some(c)) = (v["users"].as_u64(), v["contacts"].as_u64()) else { continue };
        runs.insert((u, c), v);
    }
    let by_users: Vec<_> = runs.iter().filter(|((_, c), _)| *c == 1000).map(|((u, _), v)| (*u, v)).collect();
    let by_contacts: Vec<_> = runs.iter().filter(|((u, _), _)| *u == 100).map(|((_, c), v)| (*c, v)).collect();
    table("users (1,000 contacts per side)", &by_users);
    table("contacts per side (100 users)", &by_contacts);

    let font = std::env::var("SYNCHUB_PLOT_FONT")
        .unwrap_or_else(|_| "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_string());
    let bytes = std::fs::read(&font).unwrap_or_else(|e| panic!("{font}: {e}; set SYNCHUB_PLOT_FONT to a .ttf file"));
    if register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_err() {
        panic!("{font} is not a TrueType font");
    }
    let out = std::env::var("SYNCHUB_PLOT_PNG").unwrap_or_else(|_| format!("{root}/docs/perf-growth.png"));
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent).expect("the plot's folder");
    }
    let area = BitMapBackend::new(&out, (1400, 560)).into_drawing_area();
    area.fill(&WHITE).expect("background");
    let (left, right) = area.split_horizontally(700);
    panel(&left, "Time vs users (1,000 contacts per side)", "users", &by_users);
    panel(&right, "Time vs contacts per side (100 users)", "contacts per side", &by_contacts);
    area.present().expect("the PNG written");
    println!("plot: {out}");
}

fn table(what: &str, rows: &[(u64, &serde_json::Value)]) {
    println!("\n| {what} | initial sync | incremental (1 %) | quiet | calendar sending | peak RSS (initial / all) | store B/contact |");
    println!("|---|---|---|---|---|---|---|");
    for (x, v) in rows {
        // A figure a run did not measure (0: `SYNCHUB_BENCH_CONTACTS_ONLY`) shows as –.
        let f = |k: &str, digits: usize, unit: &str| match v[k].as_f64().filter(|x| *x > 0.0) {
            Some(x) => format!("{x:.digits$}{unit}"),
            None => "–".to_string(),
        };
        println!(
            "| {x} | {} | {} | {} | {} | {} / {} | {} |",
            f("initial_s", 2, " s"),
            f("incremental_s", 3, " s"),
            f("quiet_s", 3, " s"),
            f("calendar_send_s", 2, " s"),
            f("peak_rss_initial_mib", 0, ""),
            f("peak_rss_mib", 0, " MiB"),
            f("bytes_per_contact", 0, "")
        );
    }
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    rows: &[(u64, &serde_json::Value)],
) {
    let points = |key: &str| -> Vec<(f64, f64)> {
        rows.iter().filter_map(|(x, v)| v[key].as_f64().filter(|s| *s > 0.0).map(|s| (*x as f64, s))).collect()
    };
    let all: Vec<(f64, f64)> = FIGURES.iter().flat_map(|(k, _, _)| points(k)).collect();
    let (x_min, x_max) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (y_min, y_max) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    if all.is_empty() {
        return;
    }
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min * 0.7..x_max * 1.4).log_scale(), (y_min * 0.5..y_max * 2.0).log_scale())
        .expect("chart");
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("seconds (median)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .expect("mesh");
    for (key, name, color) in FIGURES {
        let p = points(key);
        if p.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))
            .expect("line")
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(p.into_iter().map(|xy| Circle::new(xy, 4, color.filled()))).expect("points");
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .expect("legend");
}
