/* placeholder: being written */
#include <stdio.h>
int main (void) { fputs ("not yet implemented\n", stderr); return 1; }
