//! Compiles `artifacts/kaon_artifacts.proto` (the on-store format shared
//! with other tools) with prost. `protox` parses the schema in Rust, so a
//! build needs no system `protoc`: the README's commands must work on a
//! machine with only a Rust toolchain, Python 3 and Java 17.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../artifacts/kaon_artifacts.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../../artifacts"])?;
    prost_build::Config::new()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .compile_fds(descriptors)?;
    Ok(())
}
