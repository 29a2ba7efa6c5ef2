#ifndef OPENMM_CGML_PAIR_TABLE_FORCE_H_
#define OPENMM_CGML_PAIR_TABLE_FORCE_H_
/*
 * openmm_cgml: a compiled OpenMM force for tabulated coarse-grained pair potentials.
 *
 * U = sum over non-excluded pairs i<j with r_ij < cutoff of U_{t(i) t(j)}(r_ij), where each bead-type pair's
 * U is a natural cubic spline through values on a uniform grid from 0 to the cutoff (the spline OpenMM's
 * Continuous1DFunction evaluates, so the energies equal those of the CustomNonbondedForce layouts).
 * Its implementation runs a device kernel (common compute: OpenCL, CUDA) where the platform has one registered
 * (CGPairTableKernels.h), and otherwise a CustomCPPForceImpl: one C++ kernel, with its own Verlet list (cells,
 * skin), on the host.  Serialisable: loading the library registers its serialization proxy.
 */
#include "openmm/Context.h"
#include "openmm/Force.h"
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace OpenMMCGML {

class CGPairTableForce : public OpenMM::Force {
public:
    CGPairTableForce() : cutoff(1.0), skin(0.1), periodic(true), numTypes(0) {}
    /** Add a particle of bead type ``type`` (0 .. numTypes-1); returns its index. */
    int addParticle(int type);
    int getNumParticles() const { return (int) particleTypes.size(); }
    int getParticleType(int index) const;
    void setParticleType(int index, int type);
    void setNumTypes(int n);
    int getNumTypes() const { return numTypes; }
    /** Exclude the pair (i, j) from the sum. */
    int addExclusion(int particle1, int particle2);
    int getNumExclusions() const { return (int) exclusions.size(); }
    void getExclusionParticles(int index, int& particle1, int& particle2) const;
    /** The table of the type pair (type1, type2): values at r = k * cutoff / (n-1), k = 0 .. n-1 (n >= 4). */
    void setTable(int type1, int type2, const std::vector<double>& values);
    bool hasTable(int type1, int type2) const;
    const std::vector<double>& getTable(int type1, int type2) const;
    std::vector<std::pair<int, int> > getTablePairs() const;
    double getCutoffDistance() const { return cutoff; }
    void setCutoffDistance(double distance);
    /** Verlet-list skin, nm: the list holds pairs within cutoff + skin and is rebuilt after any particle moved skin/2. */
    double getNeighborSkin() const { return skin; }
    void setNeighborSkin(double distance);
    void setUsesPeriodicBoundaryConditions(bool p) { periodic = p; }
    bool usesPeriodicBoundaryConditions() const { return periodic; }
    /** Copy the tables (same type pairs and table lengths) into a Context without rebuilding it. */
    void updateParametersInContext(OpenMM::Context& context);
    /** Whether ``context``'s platform evaluates the force with its device kernel (else on the host). */
    bool runsOnDevice(OpenMM::Context& context);
    /** Why ``context`` runs the force on the host although its platform has the device kernel (another force of
     * OpenMM's nonbonded kernel disagrees: cutoff, periodicity, exclusions); "" otherwise. */
    std::string getHostReason(OpenMM::Context& context);
    /** How many times the Verlet list was built in ``context`` (a diagnostic; 0 on a device). */
    long long getNumListBuilds(OpenMM::Context& context);
protected:
    OpenMM::ForceImpl* createImpl() const;
private:
    double cutoff, skin;
    bool periodic;
    int numTypes;
    std::vector<int> particleTypes;
    std::vector<std::pair<int, int> > exclusions;
    std::map<std::pair<int, int>, std::vector<double> > tables;
};

} // namespace OpenMMCGML

#endif
