/// Upper bounds on the sizes a configuration or a benchmark/demo input table may ask for.
///
/// Weight shapes, parameter counts, token counts and the FLOP and memory estimates are computed in
/// `Int`. Without bounds, a `config.json` such as `"num_attention_heads": 4611686018427387904` makes
/// those products overflow, which traps. The bounds below keep every product far inside `Int` and
/// are far above any published DiT (FLUX.1: width 3072, text width 4096; Wan2.1 14B: width 5120,
/// feed-forward 13824, 40 layers).
public enum SizeLimits {
    /// The largest accepted configuration value (a width, a channel count, a layer count, a patch
    /// extent), model width, and input size (batch, latent extent, token count): 2¹⁶ = 65 536.
    public static let maximumExtent = 1 << 16

    /// The largest accepted element count of one input tensor: 2³² (16 GiB of float32).
    public static let maximumInputElements = 1 << 32

    /// The largest number of parameters a randomly initialised model draws by default: 2³⁰ (4 GiB of
    /// float32), far above the benchmark shapes and far below this kind of machine's memory.
    public static let maximumRandomParameters = 1 << 30

    /// Throws `unsupportedConfig` when the configuration value `value` of `field` exceeds ``maximumExtent``.
    public static func checkConfig(_ field: String, _ value: Int) throws(ModelLoadError) {
        guard value <= maximumExtent else {
            throw .unsupportedConfig(field: field, value: "\(value)",
                                     reason: "exceeds the supported maximum of \(maximumExtent)")
        }
    }

    /// Throws `malformedConfig` when the input size `value` of `field` is not in `1 ... maximumExtent`.
    public static func checkInput(_ field: String, _ value: Int) throws(ModelLoadError) {
        guard value >= 1, value <= maximumExtent else {
            throw .malformedConfig(reason: "input size \(field) = \(value) must be between 1 and \(maximumExtent)")
        }
    }

    /// Throws `malformedConfig` when a tensor of shape `shape` would hold more than
    /// ``maximumInputElements`` elements (the product is taken in `Double`, so it cannot overflow).
    public static func checkInputElements(_ name: String, _ shape: [Int]) throws(ModelLoadError) {
        let elements = shape.reduce(1.0) { $0 * Double($1) }
        guard elements <= Double(maximumInputElements) else {
            throw .malformedConfig(reason: "input \(name) \(shape) would hold \(elements) elements, more than the "
                                       + "supported \(maximumInputElements); use smaller input sizes")
        }
    }
}
