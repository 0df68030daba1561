/* placeholder: being written */
#include "cbir/common.h"
