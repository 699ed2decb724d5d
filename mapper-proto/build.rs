//! Generates the gRPC code from proto/ with protox (a protobuf compiler in
//! Rust), so building needs no system `protoc`.

fn main() {
    let proto = "proto/mapper/v1/mapper.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure().compile_fds(fds).unwrap_or_else(|e| panic!("generating code for {proto}: {e}"));
}
