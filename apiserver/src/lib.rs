//! The skiff API server.

pub mod storage;
