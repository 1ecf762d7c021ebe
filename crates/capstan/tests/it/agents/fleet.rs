//! Real `capstan-agent` processes.
