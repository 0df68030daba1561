/* placeholder: being written; 77 = skipped */
int main (void) { return 77; }
