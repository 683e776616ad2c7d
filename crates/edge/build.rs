fn main() {
    // A vendored protoc: nothing to install with apt.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().expect("vendored protoc")) };
    println!("cargo:rerun-if-changed=../../proto/herald/proxy/v1/proxy.proto");
    // The edge calls the proxy; the server side is generated too, for Rust backends and tests.
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/herald/proxy/v1/proxy.proto"], &["../../proto"])
        .expect("proxy.proto compiles");
}
