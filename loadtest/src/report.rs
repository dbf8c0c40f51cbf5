//! Results aggregation.
