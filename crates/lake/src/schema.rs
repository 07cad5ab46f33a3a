//! The three tables' schemas, partitioning and properties, in one place.
//! Timestamps are Delta `timestamp` (Arrow microseconds, UTC) and
//! EVENT_DATE is a Delta `date`, so Spark and any Delta reader accept them.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType, StructField};
use deltalake::{DeltaTable, TableProperty};
use sessionlake_model::tables::{self, raw, rejected, sessions};

use crate::error::{LakeError, Result};

/// A table's identity and layout.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// The table's name (for SQL and messages).
    pub name: &'static str,
    /// Its folder under the lake root.
    pub dir: &'static str,
    /// Columns: name, type, nullable.
    pub columns: &'static [(&'static str, ColumnType, bool)],
    /// Partition column, if any.
    pub partition_by: Option<&'static str>,
    /// Whether the change data feed is on (read incrementally downstream).
    pub change_data_feed: bool,
}

/// The column types the lake uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// Raw bytes.
    Binary,
    /// 64-bit integer.
    Long,
    /// 32-bit integer.
    Integer,
    /// Instant, microseconds, UTC.
    Timestamp,
    /// Calendar date.
    Date,
}

impl ColumnType {
    fn delta(self) -> DataType {
        match self {
            ColumnType::String => DataType::STRING,
            ColumnType::Binary => DataType::BINARY,
            ColumnType::Long => DataType::LONG,
            ColumnType::Integer => DataType::INTEGER,
            ColumnType::Timestamp => DataType::TIMESTAMP,
            ColumnType::Date => DataType::DATE,
        }
    }

    fn arrow(self) -> ArrowType {
        match self {
            ColumnType::String => ArrowType::Utf8,
            ColumnType::Binary => ArrowType::Binary,
            ColumnType::Long => ArrowType::Int64,
            ColumnType::Integer => ArrowType::Int32,
            ColumnType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Date => ArrowType::Date32,
        }
    }
}

/// `r_session_events`: one row per distinct valid event.
pub const RAW: TableSpec = TableSpec {
    name: tables::RAW_TABLE,
    dir: tables::RAW_TABLE_DIR,
    columns: &[
        (raw::COUNTRY, ColumnType::String, true),
        (raw::EVENT, ColumnType::String, false),
        (raw::PLAYER_ID, ColumnType::String, false),
        (raw::SESSION_ID, ColumnType::String, false),
        (raw::TS, ColumnType::Timestamp, false),
        (raw::DL_INSERT_TS, ColumnType::Timestamp, false),
        (raw::DL_UPDATE_TS, ColumnType::Timestamp, false),
        (raw::EVENT_DATE, ColumnType::Date, false),
        (raw::UNIQUE_ID_ROW, ColumnType::String, false),
    ],
    partition_by: Some(raw::EVENT_DATE),
    change_data_feed: true,
};

/// `r_session_events_rejected`: every line that failed, with its reason.
pub const REJECTED: TableSpec = TableSpec {
    name: tables::REJECTED_TABLE,
    dir: tables::REJECTED_TABLE_DIR,
    columns: &[
        (rejected::RAW_LINE, ColumnType::String, false),
        (rejected::RAW_BYTES, ColumnType::Binary, false),
        (rejected::SOURCE_FILE, ColumnType::String, false),
        (rejected::LINE_NUMBER, ColumnType::Long, false),
        (rejected::REASON, ColumnType::String, false),
        (rejected::MESSAGE, ColumnType::String, false),
        (rejected::REJECTED_AT, ColumnType::Timestamp, false),
    ],
    partition_by: None,
    change_data_feed: false,
};

/// `uc_delta_session_events`: one row per session.
pub const SESSIONS: TableSpec = TableSpec {
    name: tables::SESSIONS_TABLE,
    dir: tables::SESSIONS_TABLE_DIR,
    columns: &[
        (sessions::COUNTRY, ColumnType::String, true),
        (sessions::PLAYER_ID, ColumnType::String, false),
        (sessions::SESSION_ID, ColumnType::String, false),
        (sessions::START_TS, ColumnType::Timestamp, true),
        (sessions::END_TS, ColumnType::Timestamp, true),
        (sessions::SESSION_STATUS, ColumnType::Integer, false),
        (sessions::DL_INSERT_TS, ColumnType::Timestamp, false),
        (sessions::DL_UPDATE_TS, ColumnType::Timestamp, false),
        (sessions::EVENT_DATE, ColumnType::Date, false),
    ],
    partition_by: Some(sessions::EVENT_DATE),
    change_data_feed: true,
};

impl TableSpec {
    /// The Arrow schema of rows written to this table.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> =
            self.columns.iter().map(|&(name, kind, nullable)| Field::new(name, kind.arrow(), nullable)).collect();
        Arc::new(Schema::new(fields))
    }

    /// Creates the (empty) table at `table`'s location.
    pub(crate) async fn create(&self, table: DeltaTable) -> Result<DeltaTable> {
        let columns = self.columns.iter().map(|&(name, kind, nullable)| StructField::new(name, kind.delta(), nullable));
        let mut builder = table.create().with_table_name(self.name).with_columns(columns);
        if let Some(partition) = self.partition_by {
            builder = builder.with_partition_columns([partition]);
        }
        if self.change_data_feed {
            builder = builder.with_configuration_property(TableProperty::EnableChangeDataFeed, Some("true"));
        }
        builder.await.map_err(LakeError::delta(self.name))
    }
}
