// Nothing to compile: the target exists for its header. LLVMFuzzerRunDriver comes from libFuzzer.
#include "CFuzzerDriver.h"
