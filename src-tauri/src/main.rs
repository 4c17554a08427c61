fn main() {
    prism_app::run()
}
