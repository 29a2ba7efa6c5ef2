#ifndef OPENMM_CGML_SCHNET_FORCE_H_
#define OPENMM_CGML_SCHNET_FORCE_H_
/*
 * openmm_cgml: a compiled OpenMM force for the package's SchNet-style CG network (openmm_cgml.models.CGSchNet),
 * inference only: energy and analytic forces from the network's weights (numbers only), in single or double
 * precision.
 *
 * h_i = embedding[type_i];  for each interaction step k:  h += CFConv_intra,k(h) + CFConv_inter,k(h), where
 * CFConv(h)_i = out2(ssp(out1(sum_j W(r_ij) * in2f(h)_j))) over same-molecule pairs within the intramolecular
 * cutoff (intra) or other-molecule pairs within the intermolecular cutoff (inter), and
 * W(r) = filter2(ssp(filter1(exp(-gamma (r - centers)^2)))) * 0.5 (cos(pi r / cutoff) + 1);
 * E = sum_i readout2(ssp(readout1(h_i))).  ssp(x) = softplus(x) - ln 2.
 * With a table spacing > 0 the filters are cubic Hermite tables of the exact W and dW/dr on a grid whose last
 * point is the cutoff (as CGSchNet.tabulate_filters builds them); 0 evaluates the filter networks per pair.
 * Forces come from the analytic backward pass.  A CustomCPPForceImpl with the plugin's Verlet list.
 *
 * Parameters (row-major, PyTorch's nn.Linear layout out x in) are set by name:
 *   "embedding" (numTypes x hidden: the initial features of each type, temperature term included),
 *   "intra.centers", "inter.centers" (numRbf), "intra.gamma", "inter.gamma" (1),
 *   per block b in {intra, inter} and step k: "<b><k>.filter1.weight" (hidden x numRbf), ".filter1.bias",
 *   ".filter2.weight" (hidden x hidden), ".filter2.bias", ".in2f.weight", ".out1.weight", ".out1.bias",
 *   ".out2.weight", ".out2.bias";  "readout1.weight" (hidden/2 x hidden), "readout1.bias", "readout2.weight"
 *   (1 x hidden/2), "readout2.bias" (1).
 */
#include "openmm/Context.h"
#include "openmm/Force.h"
#include <map>
#include <string>
#include <vector>

namespace OpenMMCGML {

class CGSchNetForce : public OpenMM::Force {
public:
    CGSchNetForce();
    /** Add a bead of embedding row ``type`` in molecule ``molecule``; returns its index. */
    int addParticle(int type, int molecule);
    int getNumParticles() const { return (int) particleTypes.size(); }
    void getParticleParameters(int index, int& type, int& molecule) const;
    /** The architecture: sets the expected size of every parameter. */
    void setArchitecture(int numTypes, int hidden, int numRbf, int numInteractions, double intraCutoff,
                         double interCutoff);
    int getNumTypes() const { return numTypes; }
    int getHidden() const { return hidden; }
    int getNumRbf() const { return numRbf; }
    int getNumInteractions() const { return numInteractions; }
    double getIntraCutoff() const { return intraCutoff; }
    double getInterCutoff() const { return interCutoff; }
    /** Every parameter name this architecture needs, with its size. */
    std::map<std::string, int> getParameterSizes() const;
    void setParameter(const std::string& name, const std::vector<double>& values);
    const std::vector<double>& getParameter(const std::string& name) const;
    bool hasParameter(const std::string& name) const { return parameters.count(name) > 0; }
    /** nm; 0: exact filter networks per pair; > 0: cubic Hermite filter tables of about this spacing. */
    void setTableSpacing(double spacing);
    double getTableSpacing() const { return tableSpacing; }
    void setNeighborSkin(double distance);
    double getNeighborSkin() const { return skin; }
    void setUsesPeriodicBoundaryConditions(bool p) { periodic = p; }
    bool usesPeriodicBoundaryConditions() const { return periodic; }
    /** Features, weights and tables in double (true) or single precision (false, the default, as PyTorch's float32
     * models); distances, pair derivatives, energies and forces are summed in double either way. */
    void setUsesDoublePrecision(bool d) { doublePrecision = d; }
    bool getUsesDoublePrecision() const { return doublePrecision; }
    /** Copy the parameters (same architecture and particles) into a Context without rebuilding it. */
    void updateParametersInContext(OpenMM::Context& context);
    long long getNumListBuilds(OpenMM::Context& context);
protected:
    OpenMM::ForceImpl* createImpl() const;
private:
    int numTypes, hidden, numRbf, numInteractions;
    double intraCutoff, interCutoff, tableSpacing, skin;
    bool periodic, doublePrecision;
    std::vector<int> particleTypes, particleMolecules;
    std::map<std::string, std::vector<double> > parameters;
};

} // namespace OpenMMCGML

#endif
