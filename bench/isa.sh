# isa.sh — sourced by the benchmarks: env(1) arguments that give regrad and PyTorch the same
# instruction set, so a ratio compares code rather than vector widths.  This machine's
# environment pins OpenBLAS to its Haswell (AVX2) kernels (OPENBLAS_CORETYPE=Haswell) while
# PyTorch's oneDNN picks AVX-512 on its own; either side alone would skew the ratio.
#   avx2    OpenBLAS's Haswell kernels (regrad's and PyTorch's BLAS); regrad's own kernels,
#           oneDNN and ATen capped at AVX2
#   native  each library's own choice for this CPU (OpenBLAS detects the core itself;
#           regrad's convolution kernels and oneDNN take AVX-512)
#   env     the environment as it is
isa_env() {
  case "$1" in
    avx2) echo "OPENBLAS_CORETYPE=Haswell REGRAD_MAX_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" ;;
    native) echo "-u OPENBLAS_CORETYPE -u REGRAD_MAX_ISA -u DNNL_MAX_CPU_ISA -u ATEN_CPU_CAPABILITY" ;;
    env) echo "" ;;
    *) echo "bench: unknown ISA mode '$1' (avx2, native or env)" >&2; return 2 ;;
  esac
}
