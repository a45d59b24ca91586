/* Architecture-neutral stand-in so that the BPF target finds <asm/bitsperlong.h>
 * without a host multiarch include directory. */
#include <asm-generic/bitsperlong.h>
