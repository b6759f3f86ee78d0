/* odyssey-dist: the program (work in progress: replaced by the full CLI). */
#include "odyssey/core.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Finalize();
    return 0;
}
