//! Compiles `artifacts/kaon_artifacts.proto` (the on-store format shared
//! with other tools) with prost. Needs `protoc` on PATH or in `PROTOC`.
fn main() -> std::io::Result<()> {
    let proto = "../../artifacts/kaon_artifacts.proto";
    println!("cargo:rerun-if-changed={proto}");
    prost_build::Config::new()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .compile_protos(&[proto], &["../../artifacts"])
}
