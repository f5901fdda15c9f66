/// The reference repository's coefficients (ali-vilab/TeaCache @ 7c10efc, copied character for
/// character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// Builds a built-in preset (values are fixed and checked by the test suite, so no validation here).
    init(
        builtIn name: String, _ coefficients: [Double], defaultThreshold: Double,
        speedups: [(Double, Double)] = [], modulatedInput: String, provenance: String,
        schedule: TeaCacheSchedule = .standard
    ) {
        self.name = name
        self.coefficients = coefficients
        self.defaultThreshold = defaultThreshold
        self.speedups = speedups.map { ThresholdSpeedup(threshold: $0.0, speedup: $0.1) }
        self.calibratedRange = nil
        self.modulatedInput = modulatedInput
        self.provenance = provenance
        self.schedule = schedule
    }

    private static let fluxCoefficients = [4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01]
    private static let luminaCoefficients = [393.76566581, -603.50993606, 209.10239044, -23.00726601, 0.86377344]
    private static let cogVideoX5BCoefficients = [-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02]
    private static let adaLNZero = "transformer_blocks[0].norm1(h_in, emb=temb)[0] (LayerNorm(x)·(1+scale_msa)+shift_msa, image tokens)"
    private static let wanSpeedups = [(0.1, 2.0), (0.2, 3.0)]
    private static let wanSpeedupNote = "; speedups from the script's --teacache_thresh help (all Wan models)"
    private static let wanRetNote = "; speedups = baseline / TeaCache latency of the README use_ret_steps table"

    /// FLUX.1-dev. Default δ 0.6 (0.25 → 1.5×, 0.4 → 1.8×, 0.6 → 2.0×, 0.8 → 2.25×).
    public static let flux = TeaCachePreset(
        builtIn: "flux", fluxCoefficients, defaultThreshold: 0.6,
        speedups: [(0.25, 1.5), (0.4, 1.8), (0.6, 2.0), (0.8, 2.25)],
        modulatedInput: adaLNZero, provenance: "TeaCache4FLUX/teacache_flux.py")

    /// TangoFlux (FLUX coefficients). Default δ 0.25.
    public static let tangoFlux = TeaCachePreset(
        builtIn: "tangoflux", fluxCoefficients, defaultThreshold: 0.25, speedups: [(0.25, 1.7), (0.4, 2.1)],
        modulatedInput: adaLNZero + " (audio tokens)", provenance: "TeaCache4TangoFlux/teacache_tango_flux.py")

    /// HunyuanVideo. Default δ 0.15.
    public static let hunyuanVideo = TeaCachePreset(
        builtIn: "hunyuan_video",
        [7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02],
        defaultThreshold: 0.15, speedups: [(0.1, 1.6), (0.15, 2.1)],
        modulatedInput: "double_blocks[0]: modulate(img_norm1(img), shift1, scale1) = diffusers transformer_blocks[0].norm1(h_in, emb=temb)[0]",
        provenance: "TeaCache4HunyuanVideo/teacache_sample_video.py")

    /// Mochi-1-preview. Default δ 0.09. The residual includes the final norm.
    public static let mochi = TeaCachePreset(
        builtIn: "mochi",
        [-3.51241319e+03, 8.11675948e+02, -6.09400215e+01, 2.42429681e+00, 3.05291719e-03],
        defaultThreshold: 0.09, speedups: [(0.06, 1.5), (0.09, 2.1)],
        modulatedInput: "transformer_blocks[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Mochi/teacache_mochi.py")

    /// LTX-Video 0.9.1. Default δ 0.05. The residual includes the output norm and modulation.
    public static let ltxVideo = TeaCachePreset(
        builtIn: "ltx_video",
        [2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03],
        defaultThreshold: 0.05, speedups: [(0.03, 1.6), (0.05, 2.1)],
        modulatedInput: "norm1(h_in)·(1+scale_msa)+shift_msa of block 0 (scale_shift_table + temb)",
        provenance: "TeaCache4LTX-Video/teacache_ltx.py")

    /// Lumina-Next-SFT. Default δ 0.3.
    public static let luminaNext = TeaCachePreset(
        builtIn: "lumina_next", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.5), (0.3, 1.9), (0.4, 2.4), (0.5, 2.8)],
        modulatedInput: "layers[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Lumina-T2X/teacache_lumina_next.py")

    /// Lumina-Image-2.0, v1 coefficients (active in the script; = Lumina-Next). Default δ 0.3.
    public static let lumina2V1 = TeaCachePreset(
        builtIn: "lumina2_v1", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.25), (0.3, 1.5625), (0.4, 2.0833), (0.5, 2.5)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v1)")

    /// Lumina-Image-2.0, v2 coefficients (Bayesian optimisation against LPIPS, PR #76). Default δ 0.3.
    public static let lumina2V2 = TeaCachePreset(
        builtIn: "lumina2_v2",
        [225.7042019806413, -608.8453716535591, 304.1869942338369, 124.21267720116742, -1.4089066892956552],
        defaultThreshold: 0.3, speedups: [(0.2, 1.5), (0.3, 1.6), (0.5, 1.8), (1.1, 2.1)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v2, commented alternative)")

    /// CogVideoX-2b. Default δ 0.2.
    public static let cogVideoX2B = TeaCachePreset(
        builtIn: "cogvideox_2b",
        [-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03],
        defaultThreshold: 0.2, modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-2b']")

    /// CogVideoX-5b. Default δ 0.2.
    public static let cogVideoX5B = TeaCachePreset(
        builtIn: "cogvideox_5b", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b']")

    /// CogVideoX-5b-I2V (same coefficients as 5b). Default δ 0.2.
    public static let cogVideoX5BI2V = TeaCachePreset(
        builtIn: "cogvideox_5b_i2v", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b-I2V']")

    /// CogVideoX1.5-5B (text to video). Default δ 0.2.
    public static let cogVideoX15_5B = TeaCachePreset(
        builtIn: "cogvideox1.5_5b",
        [2.50210439e+02, -1.65061612e+02, 3.57804877e+01, -7.81551492e-01, 3.58559703e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.3), (0.2, 1.8), (0.3, 2.1)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B']")

    /// CogVideoX1.5-5B-I2V. Default δ 0.2.
    public static let cogVideoX15_5BI2V = TeaCachePreset(
        builtIn: "cogvideox1.5_5b_i2v",
        [1.22842302e+02, -1.04088754e+02, 2.62981677e+01, -3.06009921e-01, 3.71213220e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.5), (0.2, 2.2), (0.3, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t)) + ofs_embedding(ofs_proj(ofs))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B-I2V']")

    /// ConsisID (CogVideoX-5b coefficients). Default δ 0.1.
    public static let consisID = TeaCachePreset(
        builtIn: "consisid", cogVideoX5BCoefficients, defaultThreshold: 0.1,
        speedups: [(0.1, 1.6), (0.15, 2.1), (0.2, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4ConsisID/teacache_sample_video.py (README speedups)")

    /// HiDream-I1-Full: first 10% of the steps retained, last step not forced. Default δ 0.3.
    public static let hiDream = TeaCachePreset(
        builtIn: "hidream_i1",
        [-3.13605009e+04, -7.12425503e+02, 4.91363285e+01, 8.26515490e+00, 1.08053901e-01],
        defaultThreshold: 0.3, speedups: [(0.17, 1.5), (0.25, 1.7), (0.3, 2.0), (0.45, 2.6)],
        modulatedInput: "t_embedder(timesteps) (pure timestep embedding)",
        provenance: "TeaCache4HiDream-I1/teacache_hidream_i1.py",
        schedule: TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false, startFraction: 0.1))

    /// Wan2.1 T2V 1.3B, modulated input `e` (temb). Default δ 0.2.
    public static let wan21T2V1_3B = TeaCachePreset(
        builtIn: "wan2.1_t2v_1.3b",
        [2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B')" + wanSpeedupNote,
        schedule: .wan21(useRetentionSteps: false))

    /// Wan2.1 T2V 14B, modulated input `e`. Default δ 0.2.
    public static let wan21T2V14B = TeaCachePreset(
        builtIn: "wan2.1_t2v_14b",
        [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B')" + wanSpeedupNote,
        schedule: .wan21(useRetentionSteps: false))

    /// Wan2.1 I2V 480P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V480P = TeaCachePreset(
        builtIn: "wan2.1_i2v_480p",
        [-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P')" + wanSpeedupNote,
        schedule: .wan21(useRetentionSteps: false))

    /// Wan2.1 I2V 720P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V720P = TeaCachePreset(
        builtIn: "wan2.1_i2v_720p",
        [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P')" + wanSpeedupNote,
        schedule: .wan21(useRetentionSteps: false))

    /// Wan2.1 T2V 1.3B with retention steps, modulated input `e0` (timestep_proj). Default δ 0.2.
    public static let wan21T2V1_3BRet = TeaCachePreset(
        builtIn: "wan2.1_t2v_1.3b_ret",
        [-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02],
        defaultThreshold: 0.2, speedups: [(0.05, 1.59), (0.10, 2.37)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B', --use_ret_steps)" + wanRetNote,
        schedule: .wan21(useRetentionSteps: true))

    /// Wan2.1 T2V 14B with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21T2V14BRet = TeaCachePreset(
        builtIn: "wan2.1_t2v_14b_ret",
        [-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01],
        defaultThreshold: 0.2, speedups: [(0.10, 2.0), (0.20, 3.16)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B', --use_ret_steps)" + wanRetNote,
        schedule: .wan21(useRetentionSteps: true))

    /// Wan2.1 I2V 480P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V480PRet = TeaCachePreset(
        builtIn: "wan2.1_i2v_480p_ret",
        [2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01],
        defaultThreshold: 0.2, speedups: [(0.20, 1.82), (0.30, 2.35)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P', --use_ret_steps)" + wanRetNote,
        schedule: .wan21(useRetentionSteps: true))

    /// Wan2.1 I2V 720P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V720PRet = TeaCachePreset(
        builtIn: "wan2.1_i2v_720p_ret",
        [8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02],
        defaultThreshold: 0.2, speedups: [(0.20, 2.1), (0.30, 2.66)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P', --use_ret_steps)" + wanRetNote,
        schedule: .wan21(useRetentionSteps: true))

    /// Every built-in preset.
    public static let builtIn: [TeaCachePreset] = [
        flux, tangoFlux, hunyuanVideo, mochi, ltxVideo, luminaNext, lumina2V1, lumina2V2,
        cogVideoX2B, cogVideoX5B, cogVideoX5BI2V, cogVideoX15_5B, cogVideoX15_5BI2V, consisID, hiDream,
        wan21T2V1_3B, wan21T2V14B, wan21I2V480P, wan21I2V720P,
        wan21T2V1_3BRet, wan21T2V14BRet, wan21I2V480PRet, wan21I2V720PRet,
    ]

    /// The built-in preset called `name`, or nil.
    public static func named(_ name: String) -> TeaCachePreset? { builtIn.first { $0.name == name } }
}
