//! The tables are plain Delta Lake: standard protocol, standard types,
//! partitioned by EVENT_DATE, change data feed where it is read.

use deltalake::kernel::{DataType, PrimitiveType};
use sessionlake_lake::Lake;
use sessionlake_model::tables;

use crate::util::{generated, ingest, open_table, raw, sessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_use_standard_delta_types_and_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = generated(dir.path(), 300, 3, 0.05);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &file).await;
    raw(&lake, false).await;
    sessions(&lake, None).await;

    for (table_dir, partitioned, cdf) in [
        (tables::RAW_TABLE_DIR, true, true),
        (tables::REJECTED_TABLE_DIR, false, false),
        (tables::SESSIONS_TABLE_DIR, true, true),
    ] {
        let table = open_table(&lake, table_dir).await.expect("table exists");
        let snapshot = table.snapshot().unwrap();
        let protocol = snapshot.protocol();
        assert!(protocol.min_reader_version() <= 3, "{table_dir}: reader version {}", protocol.min_reader_version());
        let metadata = snapshot.metadata();
        let expected_partitions: Vec<String> = if partitioned { vec!["EVENT_DATE".to_string()] } else { vec![] };
        assert_eq!(metadata.partition_columns(), &expected_partitions, "{table_dir}");
        let cdf_on = metadata.configuration().get("delta.enableChangeDataFeed").map(String::as_str) == Some("true");
        assert_eq!(cdf_on, cdf, "{table_dir}: change data feed");
        let schema = snapshot.schema();
        for field in schema.fields() {
            let name = field.name();
            if name.ends_with("_TS") || name == "ts" || name.ends_with("_ts") || name == "rejected_at" {
                assert_eq!(field.data_type(), &DataType::Primitive(PrimitiveType::Timestamp), "{table_dir}.{name}");
            }
            if name == "EVENT_DATE" {
                assert_eq!(field.data_type(), &DataType::Primitive(PrimitiveType::Date), "{table_dir}.{name}");
            }
        }
    }
    let raw_dir = lake.local_root().unwrap().join(tables::RAW_TABLE_DIR);
    let partitions: Vec<String> = std::fs::read_dir(&raw_dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("EVENT_DATE="))
        .collect();
    assert!(
        partitions.iter().any(|name| name == "EVENT_DATE=2016-11-01"),
        "hive-style date partitions: {partitions:?}"
    );
}
