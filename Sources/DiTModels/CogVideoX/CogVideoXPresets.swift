import TeaCache

/// The reference repository's CogVideoX and ConsisID (TeaCache4CogVideoX1.5, TeaCache4ConsisID) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    static let cogVideoX5BCoefficients = [-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02]

    /// CogVideoX-2b. Default δ 0.2.
    public static let cogVideoX2B = TeaCachePreset(
        reference: "cogvideox_2b",
        [-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03],
        defaultThreshold: 0.2, modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-2b']")

    /// CogVideoX-5b. Default δ 0.2.
    public static let cogVideoX5B = TeaCachePreset(
        reference: "cogvideox_5b", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b']")

    /// CogVideoX-5b-I2V (same coefficients as 5b). Default δ 0.2.
    public static let cogVideoX5BI2V = TeaCachePreset(
        reference: "cogvideox_5b_i2v", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b-I2V']")

    /// CogVideoX1.5-5B (text to video). Default δ 0.2.
    public static let cogVideoX15_5B = TeaCachePreset(
        reference: "cogvideox1.5_5b",
        [2.50210439e+02, -1.65061612e+02, 3.57804877e+01, -7.81551492e-01, 3.58559703e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.3), (0.2, 1.8), (0.3, 2.1)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B']")

    /// CogVideoX1.5-5B-I2V. Default δ 0.2.
    public static let cogVideoX15_5BI2V = TeaCachePreset(
        reference: "cogvideox1.5_5b_i2v",
        [1.22842302e+02, -1.04088754e+02, 2.62981677e+01, -3.06009921e-01, 3.71213220e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.5), (0.2, 2.2), (0.3, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t)) + ofs_embedding(ofs_proj(ofs))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B-I2V']")

    /// ConsisID (CogVideoX-5b coefficients). Default δ 0.1.
    public static let consisID = TeaCachePreset(
        reference: "consisid", cogVideoX5BCoefficients, defaultThreshold: 0.1,
        speedups: [(0.1, 1.6), (0.15, 2.1), (0.2, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4ConsisID/teacache_sample_video.py (README speedups)")
}
