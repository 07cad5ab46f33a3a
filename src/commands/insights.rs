//! `sessionlake insights`: the reference's five questions about the data,
//! answered with DataFusion SQL over the gold table, and a bar chart.

use anyhow::Result;

use crate::config::{GlobalArgs, InsightsArgs};
use crate::report;

/// `sessionlake insights`.
pub async fn insights(global: &GlobalArgs, args: &InsightsArgs) -> Result<()> {
    let answers = sessionlake_insights::compute(&global.lake.clone()).await?;
    sessionlake_insights::render_chart(&args.chart, &answers.completed_by_country_top10)?;
    let chart = args.chart.display().to_string();
    if global.json {
        let mut value = serde_json::to_value(&answers)?;
        value["chart"] = chart.into();
        println!("{value}");
        return Ok(());
    }
    println!("sessions: {}", report::thousands(answers.sessions));
    for (title, header, rows) in [
        ("Completed sessions per country (top 10)", "country", &answers.completed_by_country_top10),
        ("Completed sessions per player (top 10)", "player_id", &answers.completed_by_player_top10),
    ] {
        println!("\n{title}");
        let rows: Vec<Vec<String>> =
            rows.iter().map(|(key, count)| vec![key.clone(), report::thousands(*count)]).collect();
        report::table(&[header, "completed"], &rows);
    }
    println!(
        "\nCountry with the most sessions started in 2016: {}",
        answers.top_start_country_2016.as_deref().unwrap_or("(none: no session started in 2016)")
    );
    println!("\nChart: {chart}");
    Ok(())
}
