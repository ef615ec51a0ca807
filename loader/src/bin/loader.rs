//! `loader`: trace-driven, open-loop FaaS load generator.

fn main() {}
