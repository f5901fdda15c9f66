import TeaCache

/// The reference repository's Wan2.1 coefficients (ali-vilab/TeaCache @ 7c10efc, TeaCache4Wan2.1,
/// copied character for character from teacache-spec.md §2.2), with the published thresholds and speedups.
extension TeaCachePreset {
    static let wanSpeedups: [(threshold: Double, speedup: Double)] = [(0.1, 2.0), (0.2, 3.0)]
    static let wanSpeedupNote = "; speedups from the script's --teacache_thresh help (all Wan models)"
    static let wanRetNote = "; speedups = baseline / TeaCache latency of the README use_ret_steps table"

    /// Every Wan2.1 preset (standard mode, then retention mode).
    public static var wan21: [TeaCachePreset] {
        [wan21T2V1_3B, wan21T2V14B, wan21I2V480P, wan21I2V720P,
         wan21T2V1_3BRet, wan21T2V14BRet, wan21I2V480PRet, wan21I2V720PRet]
    }

    /// Wan2.1 T2V 1.3B, modulated input `e` (temb). Default δ 0.2.
    public static let wan21T2V1_3B = TeaCachePreset(
        reference: "wan2.1_t2v_1.3b",
        [2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 T2V 14B, modulated input `e`. Default δ 0.2.
    public static let wan21T2V14B = TeaCachePreset(
        reference: "wan2.1_t2v_14b",
        [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 I2V 480P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V480P = TeaCachePreset(
        reference: "wan2.1_i2v_480p",
        [-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 I2V 720P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V720P = TeaCachePreset(
        reference: "wan2.1_i2v_720p",
        [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 T2V 1.3B with retention steps, modulated input `e0` (timestep_proj). Default δ 0.2.
    public static let wan21T2V1_3BRet = TeaCachePreset(
        reference: "wan2.1_t2v_1.3b_ret",
        [-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02],
        defaultThreshold: 0.2, speedups: [(0.05, 1.59), (0.10, 2.37)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 T2V 14B with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21T2V14BRet = TeaCachePreset(
        reference: "wan2.1_t2v_14b_ret",
        [-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01],
        defaultThreshold: 0.2, speedups: [(0.10, 2.0), (0.20, 3.16)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 I2V 480P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V480PRet = TeaCachePreset(
        reference: "wan2.1_i2v_480p_ret",
        [2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01],
        defaultThreshold: 0.2, speedups: [(0.20, 1.82), (0.30, 2.35)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 I2V 720P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V720PRet = TeaCachePreset(
        reference: "wan2.1_i2v_720p_ret",
        [8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02],
        defaultThreshold: 0.2, speedups: [(0.20, 2.1), (0.30, 2.66)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)
}
