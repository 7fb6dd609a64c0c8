//! mqtt-source benchmark (being written).

fn main() {}
