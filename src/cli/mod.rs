pub fn main() -> u8 { 0 }
